"""Each job, tenant and day counts once: finding the live runs a new run of some days would overlap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import ConcurrencyError, StateError


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


def blocking_runs(cmd: c.StartReconciliation, runs: list[ReconciliationState]) -> list[ReconciliationState]:
    """The runs among ``runs`` (those overlapping ``cmd``'s days, dead ones already abandoned) that a
    start of ``cmd`` would count twice with. Raises :class:`StateError` naming them when there are any
    and ``cmd`` does not supersede them."""
    live = [run for run in runs if run.reconciliation_id != cmd.reconciliation_id and run.status in agg.LIVE]
    if live and not cmd.supersede:
        listed = ", ".join(
            f"{run.reconciliation_id} ({run.status}, {run.date_range[0]}..{run.date_range[1]})"  # type: ignore[index]
            for run in live
        )
        raise StateError(
            f"job {cmd.job_id!r} is already reconciled for these days in this tenant by {listed}; "
            "each job, tenant and day counts once",
            hint="pass --supersede (Python: supersede=True) to replace that run with a new one",
        )
    return live


def supersede(
    run: ReconciliationState,
    cmd: c.StartReconciliation,
    append: Callable[[c.RunCommand, ReconciliationState, list[agg.NewEvent]], object],
    load: Callable[[str], ReconciliationState],
) -> None:
    """Mark ``run`` superseded by the run ``cmd`` started, through ``append`` (the service's, with its
    concurrency check), reloading ``run`` with ``load`` and trying again if it moved meanwhile."""
    assert run.reconciliation_id is not None
    key = f"{cmd.idempotency_key}:supersedes:{run.reconciliation_id}" if cmd.idempotency_key else None
    command = c.SupersedeReconciliation(
        reconciliation_id=run.reconciliation_id,
        tenant_id=cmd.tenant_id,
        user_id=cmd.user_id,
        superseded_by=cmd.reconciliation_id,
        idempotency_key=key,
    )
    for tries_left in (2, 1, 0):
        if run.status not in agg.LIVE:
            return  # it finished otherwise (cancelled, failed) meanwhile: nothing left to supersede
        try:
            append(command, run, agg.decide_supersede(run, command))
            return
        except ConcurrencyError:
            if not tries_left:
                raise
            run = load(run.reconciliation_id)
