"""Each job, tenant and day counts once: finding the live runs a new run of some days would overlap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.reconciliation import ReconciliationState


def live_runs(
    store: EventLog,
    load: Callable[[str], ReconciliationState],
    tenant_id: str,
    job_id: str,
    start: date,
    end: date,
) -> list[ReconciliationState]:
    """The live runs (started, running or completed) of ``job_id`` in ``tenant_id`` whose days
    overlap ``start..end``: what a new run of those days would count twice with."""
    data = pl.col("data")
    starts = (
        store.read(event_types=[e.RECONCILIATION_STARTED])
        .filter(pl.col("tenant_id") == tenant_id)
        .select(
            "aggregate_id",
            data.str.json_path_match("$.job_id").alias("job_id"),
            data.str.json_path_match("$.date_range.start").alias("start"),
            data.str.json_path_match("$.date_range.end").alias("end"),
        )
        .filter(
            (pl.col("job_id") == job_id)
            & (pl.col("start") <= end.isoformat())
            & (pl.col("end") >= start.isoformat())
        )
        .collect()
    )
    runs = [load(run_id) for run_id in sorted(set(starts["aggregate_id"].to_list()))]
    return [run for run in runs if run.status in agg.LIVE]
