"""The bulk fold: many events of one or many runs applied at once, equal to :func:`.builder.fold`.

Lifecycle and review events (a few per run) are applied one by one; each run of consecutive
per-record events is applied in bulk (matches only counted; exceptions and proposals added as whole
lists). Loading a run (:func:`fold_frame`), building snapshots for every run, and the property tests
all go through :func:`fold_streams`, so there is one bulk fold.

Input rows are events as serialised by the domain (``data`` is the payload's canonical JSON, see
:func:`~settler_pipeline.domain.envelope.canonical_json`); ``decode`` turns the payloads of per-record
events into typed columns (Polars by default; a caller may pass a faster decoder of the same contract).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain.payload_schema import TYPED_FLAG, union_schema
from settler_pipeline.domain.reconciliation.builder import StateBuilder
from settler_pipeline.domain.reconciliation.state import ReconciliationState
from settler_pipeline.errors import ValidationError

Decode = Callable[[pl.DataFrame, dict[str, pl.DataType]], pl.DataFrame]
"""``decode(frame, fields)``: ``frame`` without ``data`` plus one typed column per field of its
payload (null when absent), rows in order. ``frame`` may carry some of the fields already as typed
columns with the flag ``payload_typed`` (rows where it is true hold them); a decoder may use them."""

BULK_FIELDS: Final = union_schema(
    tuple(dict.fromkeys(e.PAYLOADS[kind] for kind in e.BULK_EVENT_TYPES)),
    ("side", "record_id", "reason", "line_number", "match_id", "rule", "source_ids", "target_ids"),
)
"""What the fold reads of per-record events (types from the payload models)."""

_READ: Final = frozenset(
    ("aggregate_id", "event_type", "data", "tenant_id", "correlation_id", TYPED_FLAG, *BULK_FIELDS)
)
_T = pl.col("event_type")
_COUNTED = {
    "matched": _T == e.RECORD_MATCHED,
    "proposed": _T == e.MATCH_PROPOSED,
    "duplicates": _T == e.DUPLICATE_DETECTED,
    "quarantined": _T == e.RECORD_QUARANTINED,
}
_COUNTS = ("matched", "proposed", "duplicates", "quarantined", "unmatched_source", "unmatched_target")


def decode_json(frame: pl.DataFrame, fields: dict[str, pl.DataType]) -> pl.DataFrame:
    """The default :data:`Decode`, with Polars: the typed columns when every row carries them (a
    run's own batches do), else from the JSON of every row."""
    carried = TYPED_FLAG in frame.columns and all(name in frame.columns for name in fields)
    if carried and frame[TYPED_FLAG].fill_null(False).all():
        return frame.drop("data", TYPED_FLAG).cast(fields)  # type: ignore[arg-type]
    frame = frame.drop(*fields, TYPED_FLAG, strict=False)
    decoded = frame.select(pl.col("data").str.json_decode(pl.Struct(fields)).alias("_payload"))
    return pl.concat([frame.drop("data"), decoded.unnest("_payload")], how="horizontal")


def fold_frame(state: ReconciliationState, frame: pl.DataFrame) -> ReconciliationState:
    """The state after the events in ``frame`` (one run's, in version order; columns
    ``aggregate_id, event_type, data, tenant_id, correlation_id``). Equal to :func:`.builder.fold`
    over the same events."""
    if frame.height == 0:
        return state
    run = str(frame["aggregate_id"][0])
    builders = {run: StateBuilder(state)}
    fold_streams(builders, frame)
    return builders[run].freeze()


def fold_streams(builders: dict[str, StateBuilder], rows: pl.DataFrame, decode: Decode = decode_json) -> None:
    """Apply ``rows`` (events of any number of runs, sorted by run and version; columns
    ``aggregate_id, event_type, data, tenant_id, correlation_id``) to each run's builder, creating a
    builder from the empty state for a run that has none."""
    if rows.height == 0:
        return
    # Only the columns the fold reads: the row filters below would copy every other one too (a run's
    # batches bring every typed payload column).
    rows = rows.select([name for name in rows.columns if name in _READ])
    is_bulk = _T.is_in(list(e.BULK_EVENT_TYPES))
    # Segment k of a run: its k-th lifecycle event in ``rows`` and the per-record events after it.
    rows = rows.with_columns((~is_bulk).cast(pl.Int64).cum_sum().over("aggregate_id").alias("_seg"))
    keys = ["aggregate_id", "_seg"]
    lifecycle = rows.filter(~is_bulk).select(*keys, "event_type", "data", "tenant_id", "correlation_id")
    bulk = rows.filter(is_bulk)
    # Automatic matches are only counted: their payloads are never decoded.
    typed = [c for c in rows.columns if c in BULK_FIELDS or c == TYPED_FLAG]
    detailed = decode(
        bulk.filter(_T != e.RECORD_MATCHED).select(*keys, "event_type", "data", *typed), BULK_FIELDS
    )
    segments = _segments(lifecycle, bulk, detailed, keys)
    for row in segments.iter_rows(named=True):
        run = row["aggregate_id"]
        builder = builders.get(run)
        if builder is None:
            builder = builders[run] = StateBuilder(ReconciliationState())
        if row["event_type"] is not None:
            builder.apply(
                row["event_type"], json.loads(row["data"]), run, row["tenant_id"], row["correlation_id"]
            )
        if not row["_bulk"]:
            continue
        proposals = zip(
            row["_ids"] or [],
            zip(map(tuple, row["_sources"] or []), map(tuple, row["_targets"] or []), strict=True),
            strict=True,
        )
        exceptions = zip(row["_keys"] or [], row["_values"] or [], strict=True)
        builder.add_bulk(
            {name: row[name] or 0 for name in _COUNTS}, dict(proposals), dict(exceptions), row["_bulk"]
        )


def _segments(
    lifecycle: pl.DataFrame, bulk: pl.DataFrame, detailed: pl.DataFrame, keys: list[str]
) -> pl.DataFrame:
    """One row per (run, segment): its lifecycle event (if any) and what its per-record events add up to."""
    # ``None`` as Python prints it, for fields a malformed event lacks: the same key the one-by-one
    # fold (an f-string) would build, so both folds agree even on such events.
    side = pl.col("side").fill_null("None")
    line = pl.col("line_number").cast(pl.String).fill_null("None")
    unmatched = (_T == e.RECORD_UNMATCHED) & pl.col("reason").ne_missing("outside_range")
    unknown_sides = detailed.filter(unmatched & ~pl.col("side").is_in(["source", "target"]))
    if unknown_sides.height:
        raise ValidationError(
            f"RecordUnmatched with side {unknown_sides['side'][0]!r}: expected source or target"
        )
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
    return (
        pl.concat([lifecycle.select(keys), counts.select(keys)])
        .unique()
        .join(lifecycle, on=keys, how="left")
        .join(counts, on=keys, how="left")
        .join(sides, on=keys, how="left")
        .join(exceptions, on=keys, how="left")
        .join(proposals, on=keys, how="left")
        .sort(keys)
    )


def fold_states(
    states: Mapping[str, ReconciliationState], rows: pl.DataFrame, decode: Decode = decode_json
) -> dict[str, ReconciliationState]:
    """:func:`fold_streams` on immutable states: each run's state after its events in ``rows``."""
    builders = {run: StateBuilder(state) for run, state in states.items()}
    fold_streams(builders, rows, decode)
    return {run: builder.freeze() for run, builder in builders.items()}
