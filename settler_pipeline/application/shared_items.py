"""Items two runs share, as the write side finds them in the log (the rule is the domain's:
:mod:`settler_pipeline.domain.reconciliation.shared`).

* :meth:`SharedItems.twins`: a review decision also decides the copies of its items that other
  completed runs of the job hold open;
* :meth:`SharedItems.inherited`: a run that completes after such decisions takes them over, so it
  does not show an item already decided as open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from settler_pipeline.application import run_events
from settler_pipeline.application.attempt import AttemptRunner
from settler_pipeline.application.coverage import live_runs
from settler_pipeline.application.outcome import RunOutcome
from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.domain.reconciliation.shared import Decision, inherited_decisions
from settler_pipeline.jobspec import JobSpec, job_spec_from_mapping

Records = tuple[tuple[str, ...], tuple[str, ...]]  # a proposal's source and target record ids


def run_spec(state: ReconciliationState) -> JobSpec:
    """The job spec the run last ran with."""
    return job_spec_from_mapping(
        dict(state.spec.get("spec", {})),
        base_dir=Path(state.spec.get("spec_dir") or "."),
        origin=f"the job spec of run {state.reconciliation_id}",
    )


class SharedItems:
    """Finds the runs sharing items with a run and the decisions they made (``load`` reads a run's
    current state), and records the decisions a run takes over (through ``attempts``)."""

    def __init__(
        self, store: EventLog, load: Callable[[str], ReconciliationState], attempts: AttemptRunner
    ) -> None:
        self.store = store
        self.load = load
        self.attempts = attempts

    def neighbours(
        self, state: ReconciliationState, among: Collection[str] | None = None
    ) -> list[ReconciliationState]:
        """The other completed runs of ``state``'s job and tenant (only those of ``among``, if given)
        with days in its reading window: an item of the run has its records in that window, so a run
        sharing one has days there."""
        if not (state.tenant_id and state.job_id and state.date_range):
            return []
        window = timedelta(days=run_spec(state).date_window_days)
        start, end = (date.fromisoformat(d) for d in state.date_range)
        runs = live_runs(
            self.store, self.load, state.tenant_id, state.job_id, start - window, end + window, among=among
        )
        mine = state.reconciliation_id
        return [r for r in runs if r.reconciliation_id != mine and r.status == agg.COMPLETED]

    def twins(
        self, state: ReconciliationState, drafts: list[agg.NewEvent]
    ) -> dict[str, tuple[ReconciliationState, list[agg.NewEvent]]]:
        """Other completed runs holding an item ``drafts`` decide, with the decisions on their copies."""
        if not agg.DECISIONS & {d.event_type for d in drafts}:
            return {}
        return agg.shared_decisions(state, drafts, self.neighbours(state))

    def inherited(self, before: ReconciliationState) -> tuple[ReconciliationState, list[agg.NewEvent]]:
        """For the run ``before`` describes (its state before the attempt that just completed): its
        state now and the decisions it takes over from other runs, in their order (none, and the state
        unloaded, when no run of its job near its days has made a decision)."""
        run_id, tenant = before.reconciliation_id, before.tenant_id
        if run_id is None or tenant is None:
            return before, []
        # Cheap first: decisions are few (people make them); a run's state is loaded only if some exist.
        decided = (
            self.store.read(event_types=sorted(agg.DECISIONS), tenant_id=tenant)
            .filter(pl.col("aggregate_id") != run_id)
            .select("global_position", "aggregate_id", "event_type", "data")
            .collect()
        )
        if decided.height == 0:
            return before, []
        deciding = set(decided["aggregate_id"].to_list())
        nearby = {str(r.reconciliation_id) for r in self.neighbours(before, among=deciding)}
        decided = decided.filter(pl.col("aggregate_id").is_in(sorted(nearby))).sort("global_position")
        if decided.height == 0:
            return before, []
        state = self.load(run_id)
        if state.status != agg.COMPLETED or not state.open_exceptions:
            return state, []
        events = [
            (run, agg.NewEvent(kind, e.PAYLOADS[kind].model_validate_json(data)))
            for run, kind, data in decided.select("aggregate_id", "event_type", "data").iter_rows()
        ]
        records = self._proposals(tenant, nearby)
        decisions = [Decision(event, records.get((run, _proposal_of(event)))) for run, event in events]
        return state, inherited_decisions(state, decisions)

    def take_over(self, before: ReconciliationState, user_id: str, result: RunOutcome) -> None:
        """Record, as ``user_id``, the decisions the run ``before`` describes takes over now that it
        completed (:meth:`inherited`), and add them to ``result``: read again when the run changed
        meanwhile (the append then appends nothing), up to three times. Callers hold the job's lock,
        as review decisions do, so a decision is either seen here or sees the run completed."""
        for _ in range(3):
            state, drafts = self.inherited(before)
            if not drafts:
                return
            ctx = self.attempts.context(state, user_id, cause=None)
            state, taken = self.attempts.append(
                state, pl.concat([run_events.single_event(d, ctx) for d in drafts])
            )
            if taken:
                result.version, result.events_appended = state.version, result.events_appended + taken
                result.details["decisions_taken_over"] = taken
                return

    def _proposals(self, tenant: str, runs: Collection[str]) -> dict[tuple[str, str], Records]:
        """The records of every proposal of ``runs``, by run and match id."""
        frame = (
            self.store.read(event_types=[e.MATCH_PROPOSED], tenant_id=tenant)
            .filter(pl.col("aggregate_id").is_in(sorted(runs)))
            .select("aggregate_id", "data")
            .collect()
        )
        found: dict[tuple[str, str], Records] = {}
        for run, data in frame.iter_rows():
            payload = json.loads(data)
            found[(run, payload["match_id"])] = (tuple(payload["source_ids"]), tuple(payload["target_ids"]))
        return found


def _proposal_of(event: agg.NewEvent) -> str:
    """The match id of the proposal a decision is about ("" for one about something else)."""
    payload = event.payload
    if isinstance(payload, e.MatchConfirmed | e.MatchRejected):
        return payload.match_id
    if isinstance(payload, e.ExceptionDismissed) and payload.exception_id.startswith(xid.PROPOSED + ":"):
        return xid.parse(payload.exception_id).key
    return ""
