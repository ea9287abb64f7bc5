"""``tenant_usage_view``: what each tenant ran, per UTC day of the events' own time.

Every attempt counts (a failed attempt and its retry are both work done). The day is the UTC date of
the event's ``timestamp`` (when it happened), not of its commit, so a backfill lands on the right day.
Merge: sums per (tenant, day).
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.projections.batch import FETCH_TYPES, EventBatch
from settler_pipeline.projections.projection import Column, TableReadModel

_T = pl.col("event_type")
_SUMS = (
    "runs_started",
    "runs_retried",
    "runs_completed",
    "runs_failed",
    "runs_cancelled",
    "records_processed",
    "total_duration_ms",
)


class TenantUsage(TableReadModel):
    name = "tenant_usage_view"
    version = 2
    doc = "Per tenant and UTC day (of the events' own time): runs started, finished, records processed."
    key = ("tenant_id", "day")
    columns: ClassVar[tuple[Column, ...]] = (
        Column("tenant_id", pl.String(), "The tenant."),
        Column("day", pl.Date(), "UTC date of the events' own timestamp (not their commit time)."),
        Column("runs_started", pl.Int64(), "ReconciliationStarted events (new runs)."),
        Column(
            "runs_retried",
            pl.Int64(),
            "ReconciliationRetried events (new attempts of failed/cancelled runs).",
        ),
        Column("runs_completed", pl.Int64(), "ReconciliationCompleted events."),
        Column(
            "runs_failed",
            pl.Int64(),
            "ReconciliationFailed and ReconciliationAbandoned events: attempts that ended without "
            "completing (an abandoned one's process died), as error_hotspots_view counts them.",
        ),
        Column("runs_cancelled", pl.Int64(), "ReconciliationCancelled events."),
        Column(
            "records_processed",
            pl.Int64(),
            "Source + target records read (valid + quarantined) by every attempt's fetch events.",
        ),
        Column(
            "total_duration_ms",
            pl.Int64(),
            "Sum of completed attempts' processing time (summary.duration_ms).",
        ),
    )

    def apply(self, state: pl.DataFrame, batch: EventBatch) -> pl.DataFrame:
        life = batch.lifecycle
        if life.height == 0:
            return state
        counted = life.with_columns(pl.col("timestamp").dt.date().alias("day"))
        fetched = _T.is_in(list(FETCH_TYPES))
        completed = _T == e.RECONCILIATION_COMPLETED
        new = counted.group_by("tenant_id", "day").agg(
            (_T == e.RECONCILIATION_STARTED).sum().alias("runs_started"),
            (_T == e.RECONCILIATION_RETRIED).sum().alias("runs_retried"),
            completed.sum().alias("runs_completed"),
            _T.is_in([e.RECONCILIATION_FAILED, e.RECONCILIATION_ABANDONED]).sum().alias("runs_failed"),
            (_T == e.RECONCILIATION_CANCELLED).sum().alias("runs_cancelled"),
            pl.when(fetched)
            .then(pl.col("count").fill_null(0) + pl.col("quarantined_count").fill_null(0))
            .otherwise(0)
            .sum()
            .alias("records_processed"),
            pl.when(completed)
            .then(pl.col("summary").struct.field("duration_ms").fill_null(0))
            .otherwise(0)
            .sum()
            .alias("total_duration_ms"),
        )
        # Keep only days where something this model counts happened (reviews alone add no row).
        new = new.filter(pl.sum_horizontal(_SUMS) > 0)
        merged = state.join(new, on=["tenant_id", "day"], how="full", coalesce=True, suffix="_new")
        schema = self.stored_schema()
        return merged.select(
            "tenant_id",
            "day",
            *(
                (pl.col(c).fill_null(0) + pl.col(f"{c}_new").fill_null(0)).cast(pl.Int64).alias(c)
                for c in _SUMS
            ),
        ).cast(schema)  # type: ignore[arg-type]
