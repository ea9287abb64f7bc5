"""Turn a run's loaded sides and match result into columnar event batches (no object per record).

Every frame returned here has the columns of :meth:`EventStore.append_frame`, ``data`` holding the JSON
payload described in ``domain/events.py``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from settler_pipeline.adapters.loader import LoadedSide
from settler_pipeline.domain import events as e
from settler_pipeline.domain.matching import MatchResult
from settler_pipeline.store.event_ids import new_ids


def _frame(
    data: pl.Expr, event_type: pl.Expr | str, height: int, meta: dict[str, Any], source: pl.DataFrame
) -> pl.DataFrame:
    out = source.select(
        pl.lit(meta["aggregate_id"]).alias("aggregate_id"),
        pl.lit(e.AGGREGATE_TYPE).alias("aggregate_type"),
        (pl.lit(event_type) if isinstance(event_type, str) else event_type).alias("event_type"),
        data.alias("data"),
        pl.lit(meta["tenant_id"]).alias("tenant_id"),
        pl.lit(meta["user_id"], dtype=pl.String).alias("user_id"),
        pl.lit(meta["correlation_id"]).alias("correlation_id"),
        pl.lit(meta["causation_id"], dtype=pl.String).alias("causation_id"),
        pl.lit(meta["timestamp"], dtype=pl.Datetime("us", "UTC")).alias("timestamp"),
    )
    return (
        out.with_columns(new_ids(height))
        if height
        else out.with_columns(pl.lit(None, pl.String).alias("event_id"))
    )


def quarantine_events(side: str, loaded: LoadedSide, attempt: int, meta: dict[str, Any]) -> pl.DataFrame:
    """One ``RecordQuarantined`` per quarantined row, with the raw row, reason and line number."""
    q = loaded.quarantine
    data = pl.struct(
        pl.lit(attempt).alias("attempt"),
        pl.lit(side).alias("side"),
        pl.col("line_number"),
        pl.col("reason"),
        pl.col("raw"),
    ).struct.json_encode()
    return _frame(data, e.RECORD_QUARANTINED, q.height, meta, q)


def match_events(result: MatchResult, attempt: int, meta: dict[str, Any]) -> pl.DataFrame:
    """``RecordMatched`` (auto-confirmed) and ``MatchProposed`` (needs review) events."""
    m = result.matches
    data = pl.struct(
        pl.lit(attempt).alias("attempt"),
        pl.col("match_id"),
        pl.col("rule"),
        pl.col("match_type"),
        pl.col("source_ids"),
        pl.col("target_ids"),
        pl.col("source_amount_minor").alias("amount"),
        pl.col("target_amount_minor").alias("target_amount"),
        pl.col("amount_difference_minor").alias("amount_difference"),
        pl.col("currency"),
        pl.col("confidence").round(4),
        pl.col("matched_fields"),
        pl.col("date_difference_days"),
    ).struct.json_encode()
    event_type = (
        pl.when(pl.col("status") == "matched")
        .then(pl.lit(e.RECORD_MATCHED))
        .otherwise(pl.lit(e.MATCH_PROPOSED))
    )
    return _frame(data, event_type, m.height, meta, m)


def unmatched_events(result: MatchResult, attempt: int, meta: dict[str, Any]) -> pl.DataFrame:
    """One ``RecordUnmatched`` per record left unmatched, with its reason."""
    u = result.unmatched
    data = pl.struct(
        pl.lit(attempt).alias("attempt"),
        pl.col("side"),
        pl.col("record_id"),
        pl.col("line_number"),
        pl.col("amount_minor").alias("amount"),
        pl.col("currency"),
        pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias("occurred_at"),
        pl.col("reason"),
        pl.col("candidate_ids"),
        pl.col("closest_id"),
        pl.col("closest_amount_minor").alias("closest_amount"),
        pl.col("closest_occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias("closest_occurred_at"),
        pl.col("closest_reference"),
        pl.col("closest_rejection"),
    ).struct.json_encode()
    return _frame(data, e.RECORD_UNMATCHED, u.height, meta, u)


def duplicate_events(result: MatchResult, attempt: int, meta: dict[str, Any]) -> pl.DataFrame:
    """One ``DuplicateRecordDetected`` per extra occurrence of a record id."""
    d = result.duplicates
    data = pl.struct(
        pl.lit(attempt).alias("attempt"),
        pl.col("side"),
        pl.col("record_id"),
        pl.col("line_number"),
        pl.col("first_line_number"),
    ).struct.json_encode()
    return _frame(data, e.DUPLICATE_DETECTED, d.height, meta, d)


def single_event(event_type: str, payload: dict[str, Any], meta: dict[str, Any]) -> pl.DataFrame:
    """A one-row frame for a lifecycle event."""
    import json

    one = pl.DataFrame({"_": [0]})
    return _frame(pl.lit(json.dumps(payload, sort_keys=True)), event_type, 1, meta, one)
