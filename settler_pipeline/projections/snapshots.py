"""Aggregate snapshots built in bulk for every run that needs one.

``build_snapshots(store, every)`` stores, for every reconciliation stream whose version crossed a
multiple of ``every`` since its latest snapshot of the current ``SNAPSHOT_SCHEMA_VERSION``, one
snapshot of its state **at its current version** (not one per multiple crossed: loading needs only the
newest). Snapshots of another schema version are never read: such a stream counts as having none and
is folded from its first event.

The log is read once, from the oldest position any of those streams needs, in chunks of positions, and
every stream is folded along the way with the aggregate's own builder: lifecycle events one by one, and
each run of consecutive per-record events in bulk (counted, and their exceptions and proposals added as
whole lists), exactly as ``fold_frame`` does for one stream. The result equals ``fold`` over the
stream's events (a property test checks snapshot + tail against full replay).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.payload_schema import union_schema
from settler_pipeline.domain.reconciliation import _Builder as Builder  # the aggregate's own evolve
from settler_pipeline.errors import ValidationError
from settler_pipeline.projections.batch import decode_payloads, upcast_payloads
from settler_pipeline.store.event_store import EventStore

CHUNK_EVENTS: Final = 1_000_000
_T = pl.col("event_type")
# What the bulk fold reads of per-record events (types from the payload models).
_FIELDS: Final = union_schema(
    tuple(dict.fromkeys(e.PAYLOADS[kind] for kind in e.BULK_EVENT_TYPES)),
    ("side", "record_id", "reason", "line_number", "match_id", "rule", "source_ids", "target_ids"),
)
_COUNTED = {
    "matched": _T == e.RECORD_MATCHED,
    "proposed": _T == e.MATCH_PROPOSED,
    "duplicates": _T == e.DUPLICATE_DETECTED,
    "quarantined": _T == e.RECORD_QUARANTINED,
}


def streams_needing_snapshots(store: EventStore, every: int) -> pl.DataFrame:
    """Reconciliation streams whose version crossed a multiple of ``every`` since their latest usable
    snapshot: ``aggregate_id, version, position`` (current) and ``snapshot_version, snapshot_position,
    state`` (null without a snapshot)."""
    if every < 1:
        raise ValidationError("every must be at least 1")
    current = (
        store.read()
        .filter(pl.col("aggregate_type") == e.AGGREGATE_TYPE)
        .group_by("aggregate_id")
        .agg(
            pl.col("aggregate_version").max().alias("version"),
            pl.col("global_position").max().alias("position"),
        )
        .collect()
    )
    latest = store.snapshots.latest_frame(e.AGGREGATE_TYPE, agg.SNAPSHOT_SCHEMA_VERSION).select(
        "aggregate_id",
        pl.col("aggregate_version").cast(pl.Int64).alias("snapshot_version"),
        pl.col("global_position").cast(pl.Int64).alias("snapshot_position"),
        "state",
    )
    return (
        current.join(latest, on="aggregate_id", how="left")
        .filter(pl.col("version") // every > pl.col("snapshot_version").fill_null(0) // every)
        .sort("aggregate_id")
    )


def build_snapshots(store: EventStore, every: int = 100, *, chunk_events: int = CHUNK_EVENTS) -> int:
    """Snapshot every reconciliation stream whose version crossed a multiple of ``every`` since its latest
    snapshot (of the current schema version), at its current version. Returns how many were stored."""
    needed = streams_needing_snapshots(store, every)
    if needed.height == 0:
        return 0
    builders: dict[str, Builder] = {}
    for aggregate_id, state in (
        needed.filter(pl.col("state").is_not_null()).select("aggregate_id", "state").iter_rows()
    ):
        builders[aggregate_id] = Builder(agg.ReconciliationState.from_dict(json.loads(state)))
    floor = needed.select("aggregate_id", pl.col("snapshot_version").fill_null(0).alias("_from"))
    start = 0 if needed["snapshot_position"].null_count() else int(needed["snapshot_position"].min())  # type: ignore[arg-type]
    head = int(needed["position"].max())  # type: ignore[arg-type]
    position = start
    while position < head:
        end = min(position + chunk_events, head)
        chunk = (
            store.read(from_position=position, to_position=end)
            .filter(pl.col("aggregate_type") == e.AGGREGATE_TYPE)
            .join(floor.lazy(), on="aggregate_id", how="inner")
            .filter(pl.col("aggregate_version") > pl.col("_from"))
            .select(
                "aggregate_id",
                "aggregate_version",
                "event_type",
                "event_version",
                "tenant_id",
                "correlation_id",
                # Automatic matches are only counted: their payloads are dropped before decoding.
                pl.when(_T == e.RECORD_MATCHED).then(pl.lit("{}")).otherwise(pl.col("data")).alias("data"),
            )
            .collect()
            .sort("aggregate_id", "aggregate_version")
        )
        _fold_chunk(builders, upcast_payloads(chunk, store.registry))
        position = end
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for aggregate_id, version, stream_position in needed.select(
        "aggregate_id", "version", "position"
    ).iter_rows():
        state = builders.get(aggregate_id, Builder(agg.ReconciliationState())).freeze()
        if state.version != version:  # the log changed under us (a newer event): snapshot what we folded
            continue
        rows.append(
            {
                "aggregate_id": aggregate_id,
                "aggregate_type": e.AGGREGATE_TYPE,
                "aggregate_version": version,
                "schema_version": agg.SNAPSHOT_SCHEMA_VERSION,
                "global_position": stream_position,
                "state": json.dumps(state.to_dict(), sort_keys=True, default=str),
                "created_at": now,
            }
        )
    if not rows:
        return 0
    frame = pl.DataFrame(
        rows,
        schema={
            "aggregate_id": pl.String,
            "aggregate_type": pl.String,
            "aggregate_version": pl.Int64,
            "schema_version": pl.Int32,
            "global_position": pl.Int64,
            "state": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
        },
    )
    return store.snapshots.save_frame(frame)


def _fold_chunk(builders: dict[str, Builder], rows: pl.DataFrame) -> None:
    """Fold ``rows`` (stored events of many streams, sorted by stream and version) into ``builders``."""
    if rows.height == 0:
        return
    is_bulk = _T.is_in(list(e.BULK_EVENT_TYPES))
    # Segment k of a stream: its k-th lifecycle event of the chunk and the per-record events after it.
    rows = rows.with_columns((~is_bulk).cast(pl.Int64).cum_sum().over("aggregate_id").alias("_seg"))
    keys = ["aggregate_id", "_seg"]
    lifecycle = rows.filter(~is_bulk).select(
        *keys, "event_type", "data", "tenant_id", "correlation_id", pl.lit(1, pl.Int64).alias("_n")
    )
    bulk = rows.filter(is_bulk)
    detailed = decode_payloads(
        bulk.filter(_T != e.RECORD_MATCHED).select(*keys, "event_type", "data"), _FIELDS
    )
    side = pl.col("side").fill_null("None")
    line = pl.col("line_number").cast(pl.String).fill_null("None")
    unmatched = (_T == e.RECORD_UNMATCHED) & pl.col("reason").ne_missing("outside_range")
    exceptions = (
        detailed.filter(unmatched | _T.is_in([e.MATCH_PROPOSED, e.DUPLICATE_DETECTED, e.RECORD_QUARANTINED]))
        .select(
            *keys,
            pl.when(unmatched)
            .then(xid.unmatched_expr(side, pl.col("record_id").fill_null("None")))
            .when(_T == e.MATCH_PROPOSED)
            .then(xid.proposed_expr(pl.col("match_id").fill_null("None")))
            .when(_T == e.DUPLICATE_DETECTED)
            .then(xid.duplicate_expr(side, line))
            .otherwise(xid.quarantined_expr(side, line))
            .alias("key"),
            pl.when(_T == e.MATCH_PROPOSED)
            .then(pl.col("rule"))
            .when(_T == e.DUPLICATE_DETECTED)
            .then(pl.lit("duplicate"))
            .otherwise(pl.col("reason"))
            .alias("value"),
        )
        .group_by(keys, maintain_order=True)
        .agg(pl.col("key").alias("_keys"), pl.col("value").alias("_values"))
    )
    proposals = (
        detailed.filter(_T == e.MATCH_PROPOSED)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("match_id").alias("_ids"),
            pl.col("source_ids").alias("_sources"),
            pl.col("target_ids").alias("_targets"),
        )
    )
    counts = bulk.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("_bulk"),
        *(expr.sum().alias(name) for name, expr in _COUNTED.items()),
    )
    sides = (
        detailed.filter(unmatched)
        .group_by(keys)
        .agg(
            (pl.col("side") == "source").sum().alias("unmatched_source"),
            (pl.col("side") == "target").sum().alias("unmatched_target"),
        )
    )
    unknown_sides = detailed.filter(unmatched & ~pl.col("side").is_in(["source", "target"]))
    if unknown_sides.height:
        raise ValidationError(
            f"RecordUnmatched with side {unknown_sides['side'][0]!r}: expected source or target"
        )
    segments = (
        pl.concat([lifecycle.select(keys), counts.select(keys)])
        .unique()
        .join(lifecycle, on=keys, how="left")
        .join(counts, on=keys, how="left")
        .join(sides, on=keys, how="left")
        .join(exceptions, on=keys, how="left")
        .join(proposals, on=keys, how="left")
        .sort(keys)
    )
    for row in segments.iter_rows(named=True):
        aggregate_id = row["aggregate_id"]
        builder = builders.get(aggregate_id)
        if builder is None:
            builder = builders[aggregate_id] = Builder(agg.ReconciliationState())
        if row["event_type"] is not None:
            builder.apply(
                row["event_type"],
                json.loads(row["data"]),
                aggregate_id,
                row["tenant_id"],
                row["correlation_id"],
            )
        if not row["_bulk"]:
            continue
        for name in (
            "matched",
            "proposed",
            "duplicates",
            "quarantined",
            "unmatched_source",
            "unmatched_target",
        ):
            builder.counts[name] += row[name] or 0
        if row["_ids"] is not None:
            builder.proposals.update(
                zip(
                    row["_ids"],
                    zip(map(tuple, row["_sources"] or []), map(tuple, row["_targets"] or []), strict=True),
                    strict=True,
                )
            )
        if row["_keys"] is not None:
            builder.exceptions.update(zip(row["_keys"], row["_values"], strict=True))
        builder.s = replace(builder.s, version=builder.s.version + row["_bulk"])
