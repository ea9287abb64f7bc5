"""Each job, tenant and day counts once: finding the live runs a new run of some days would overlap."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date

import polars as pl

from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import StateError


def live_runs(
    store: EventLog,
    load: Callable[[str], ReconciliationState],
    tenant_id: str,
    job_id: str,
    start: date,
    end: date,
    *,
    among: Collection[str] | None = None,
    excluding: Collection[str] = (),
) -> list[ReconciliationState]:
    """The live runs (started, running or completed) of ``job_id`` in ``tenant_id`` whose days
    overlap ``start..end``: what a new run of those days would count twice with (only runs of
    ``among``, when given, and none of ``excluding``: the others are not loaded, which for a big run
    is a read of its events)."""
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
    ids = set(starts["aggregate_id"].to_list()).difference(excluding)
    runs = [load(run_id) for run_id in sorted(ids if among is None else ids.intersection(among))]
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
    start, end = cmd.date_range.start.isoformat(), cmd.date_range.end.isoformat()
    for run in live:
        first, last = run.date_range  # type: ignore[misc]
        if first < start or last > end:
            # A run is replaced whole: superseding it from part of its days would leave the others
            # reconciled by no live run (and drop their review decisions) without a word.
            raise StateError(
                f"run {run.reconciliation_id} reconciles {first}..{last} of job {cmd.job_id!r}; a run of "
                f"{start}..{end} would replace all of it and leave its other days unreconciled",
                hint=f"supersede it with a run of every day it covers (--from {min(first, start)} "
                f"--to {max(last, end)}), or leave it as it is",
            )
    return live


def superseding(
    state: ReconciliationState, load: Callable[[str], ReconciliationState], user_id: str
) -> list[tuple[ReconciliationState, list[agg.NewEvent]]]:
    """For a run completing now, each run it replaces (``state.supersedes``) that is still live, as
    loaded now, with the event that supersedes it: appended in the same atomic batch as the completion,
    so the days never count twice and a run that does not complete replaces nothing. Runs that ended
    otherwise meanwhile (cancelled, superseded by another) are left out."""
    assert state.reconciliation_id is not None and state.tenant_id is not None
    replaced = []
    for run_id in state.supersedes:
        run = load(run_id)
        if run.status not in agg.LIVE:
            continue
        command = c.SupersedeReconciliation(
            reconciliation_id=run_id,
            tenant_id=state.tenant_id,
            user_id=user_id,
            superseded_by=state.reconciliation_id,
        )
        replaced.append((run, agg.decide_supersede(run, command)))
    return replaced
