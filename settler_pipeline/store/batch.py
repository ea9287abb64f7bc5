"""What every event log does to a batch, written once: numbering it, recognising a retry, upcasting,
and where a time-travel read stops.

The Parquet/DuckDB store and the in-memory log both call these, so "the same batch again", "the
next position and version" and "as of" mean exactly the same thing in both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import polars as pl

from settler_pipeline.domain.envelope import canonical_json
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.errors import DuplicateEventError
from settler_pipeline.store.envelopes import frame_to_envelopes
from settler_pipeline.store.payloads import EXTRA_COLUMNS
from settler_pipeline.store.schema import COLUMNS, POLARS_SCHEMA

CONTENT_COLUMNS = (
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "event_version",
    "data",
    "tenant_id",
    "user_id",
    "correlation_id",
    "causation_id",
    "metadata_extra",
)
"""What makes two events with one id the same event (an idempotent retry) rather than a clash."""


def number_batch(
    frame: pl.DataFrame, *, head: int, created_at: datetime, versions: Mapping[str, int]
) -> pl.DataFrame:
    """``frame`` (a prepared batch) with positions ``head + 1 ..`` in batch order, each stream's versions
    continuing from ``versions`` (absent = a new stream), and one commit time for the whole batch."""
    # a lookup of each row's base version and a running count per stream, in one pass over the
    # batch (a join with a frame of the bases cost ~1.5x as much on a 10k-row batch)
    base = pl.col("aggregate_id").replace_strict(
        pl.Series(list(versions), dtype=pl.String),
        pl.Series(list(versions.values()), dtype=pl.Int64),
        default=0,
        return_dtype=pl.Int64,
    )
    running = pl.col("aggregate_id").cum_count().over("aggregate_id").cast(pl.Int64)
    return frame.with_columns(
        pl.int_range(head + 1, head + 1 + frame.height, dtype=pl.Int64).alias("global_position"),
        pl.lit(created_at, dtype=POLARS_SCHEMA["created_at"]).alias("created_at"),
        (base + running).alias("aggregate_version"),
    ).select(*COLUMNS, *(c for c in frame.columns if c in EXTRA_COLUMNS))


def retried_positions(frame: pl.DataFrame, stored: pl.DataFrame) -> list[int]:
    """The original positions of ``frame``'s events, given ``stored``: the log's rows with any of its
    ids. Raises :class:`DuplicateEventError` when only part of the batch is stored, or when an id is
    stored with other content."""
    stored = stored.unique("event_id", keep="first")
    if stored.height != frame.height:
        raise DuplicateEventError(
            f"event {stored['event_id'][0]} is already in the log but other events of the batch are not",
            hint="retry exactly the batch that was sent before, or give the new events new ids",
        )
    joined = frame.select("event_id", *CONTENT_COLUMNS).join(
        stored.select("event_id", "global_position", *CONTENT_COLUMNS),
        on="event_id",
        how="left",
        suffix="_stored",
        maintain_order="left",
    )
    for column in CONTENT_COLUMNS:
        differs = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_stored")))
        if differs.height:
            raise DuplicateEventError(
                f"event {differs['event_id'][0]} is already in the log with a different {column}",
                hint="an event id names one event forever; give a different event a new id",
            )
    return [int(p) for p in joined["global_position"]]


def stale_rows(rows: pl.DataFrame, registry: EventRegistry) -> pl.Expr | None:
    """The rows of ``rows`` (with ``event_type`` and ``event_version``) stored at an older version than
    their type's current one, as a filter; None when every row is current (the usual case, cheap)."""
    stale = [
        (event_type, version)
        for event_type, version in rows.select("event_type", "event_version").unique().iter_rows()
        if (current := registry.current_version(event_type)) is not None and version < current
    ]
    if not stale:
        return None
    return pl.struct("event_type", "event_version").is_in(
        pl.DataFrame(stale, schema={"event_type": pl.String, "event_version": pl.Int32}, orient="row")
        .to_struct()
        .implode()
    )


def upcast_rows(rows: pl.DataFrame, registry: EventRegistry) -> pl.DataFrame:
    """``rows`` with every event whose type has a newer registered version upcast (``data`` rewritten
    as canonical JSON, ``event_version`` raised); rows already current are untouched. Position order."""
    needs = stale_rows(rows, registry)
    if needs is None:
        return rows
    fixed = [
        {**row, "data": canonical_json(up.data), "event_version": up.event_version}
        for row in rows.filter(needs).iter_rows(named=True)
        for up in (registry.upcast(frame_to_envelopes(pl.DataFrame([row], schema=rows.schema))[0]),)
    ]
    fixed_frame = pl.DataFrame(fixed, schema=rows.schema)
    return pl.concat([rows.filter(~needs), fixed_frame]).sort("global_position")


def as_of_limit(
    position: int | None, when: datetime | None, position_at: Callable[[datetime], int]
) -> int | None:
    """The last position a read as of ``position`` and/or the time ``when`` may return (the earlier
    of the two; ``position_at`` gives the head at a time), or None when neither is given."""
    limits = [p for p in (position, position_at(when) if when is not None else None) if p is not None]
    return min(limits) if limits else None
