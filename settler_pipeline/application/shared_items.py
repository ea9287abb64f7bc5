"""Items two runs share, as the write side finds them in the log (the rule is the domain's:
:mod:`settler_pipeline.domain.reconciliation.shared`).

* :meth:`SharedItems.twins`: a review decision also decides the copies of its items that other
  completed runs of the job hold open;
* :meth:`SharedItems.taken_over`: a run that completes after such decisions takes them over, in the
  same atomic batch as its completion, so it never shows an item already decided as open.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection
from datetime import date, timedelta

import polars as pl

from settler_pipeline.application.coverage import live_runs
from settler_pipeline.application.ports import Completing, EventLog
from settler_pipeline.application.run_spec import run_spec
from settler_pipeline.application.start_lock import StartLocks
from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.envelope import canonical_json
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.domain.reconciliation.shared import (
    Decision,
    closure_run,
    inherited_decisions,
)
from settler_pipeline.errors import StateError

Records = tuple[tuple[str, ...], tuple[str, ...]]  # a proposal's source and target record ids


class SharedItems:
    """Finds the runs sharing items with a run and the decisions they made (``load`` reads a run's
    current state; ``start_locks``, when given, are the jobs' locks review decisions hold)."""

    def __init__(
        self, store: EventLog, load: Callable[[str], ReconciliationState], start_locks: StartLocks | None
    ) -> None:
        self.store = store
        self.load = load
        self.start_locks = start_locks

    def lock(self, state: ReconciliationState) -> contextlib.AbstractContextManager[None]:
        """The start lock of ``state``'s job (none without locks or a job): review decisions on the job
        and a completion's taking over hold it."""
        if self.start_locks is None or state.job_id is None:
            return contextlib.nullcontext()
        return self.start_locks.hold(state.tenant_id or "", state.job_id)

    def neighbours(
        self, state: ReconciliationState, among: Collection[str] | None = None
    ) -> list[ReconciliationState]:
        """The other completed runs of ``state``'s job and tenant (only those of ``among``, if given)
        with days in its reading window: an item of the run has its records in that window, so a run
        sharing one has days there (the runs a completing run supersedes among them: they are still
        completed until its completion is appended)."""
        if not (state.tenant_id and state.job_id and state.date_range):
            return []
        window = timedelta(days=run_spec(state).date_window_days)
        start, end = (date.fromisoformat(d) for d in state.date_range)
        mine = str(state.reconciliation_id)
        runs = live_runs(
            self.store,
            self.load,
            state.tenant_id,
            state.job_id,
            start - window,
            end + window,
            among=among,
            excluding=[mine],  # never load the run itself: a big run's load reads all its events
        )
        return [r for r in runs if r.status == agg.COMPLETED]

    def refuse_records_of_others(
        self, state: ReconciliationState, sources: Collection[str], targets: Collection[str]
    ) -> None:
        """Raise :class:`StateError` naming the run when a record a match by hand names is not open in
        ``state``'s run but in another completed run of its job (a charge of one day and its payout in
        the next day's run): the match cannot span two runs, and the error says what to do instead."""
        foreign = [
            (side, record)
            for side, ids in (("source", sources), ("target", targets))
            for record in ids
            if xid.unmatched(side, record) not in state.open_exceptions
        ]
        if not foreign:
            return
        for run in self.neighbours(state):
            for side, record in foreign:
                if xid.unmatched(side, record) in run.open_exceptions:
                    days = " to ".join(dict.fromkeys(run.date_range or ()))
                    both = sorted([*(run.date_range or ()), *(state.date_range or ())])
                    raise StateError(
                        f"{side} record {record} is open in run {run.reconciliation_id} ({days}), not in "
                        "this run: a match by hand takes the records of one run",
                        hint=f"reconcile {both[0]} to {both[-1]} in one run (`settler reconcile SPEC "
                        f"--from {both[0]} --to {both[-1]} --supersede` replaces both runs) and match "
                        "there, or dismiss each record in its own run with a note naming the other",
                    )

    def twins(
        self, state: ReconciliationState, drafts: list[agg.NewEvent]
    ) -> dict[str, tuple[ReconciliationState, list[agg.NewEvent]]]:
        """Other completed runs holding an item ``drafts`` decide, with the decisions on their copies.
        Raises :class:`StateError` when ``drafts`` would match a record that one of those runs already
        matched with other records (a bank line two daily runs each propose with a different charge):
        a record is matched once across the runs of a job, as within one."""
        if not agg.DECISIONS & {d.event_type for d in drafts}:
            return {}
        neighbours = self.neighbours(state)
        self._refuse_matching_twice(state, drafts, [str(r.reconciliation_id) for r in neighbours])
        return agg.shared_decisions(state, drafts, neighbours)

    def _refuse_matching_twice(
        self, state: ReconciliationState, drafts: list[agg.NewEvent], runs: list[str]
    ) -> None:
        matching: list[Records] = []
        for draft in drafts:
            payload = draft.payload
            if isinstance(payload, e.MatchConfirmed) and payload.match_id in state.open_proposals:
                matching.append(state.open_proposals[payload.match_id])
            elif isinstance(payload, e.RecordsManuallyMatched):
                matching.append((tuple(payload.source_ids), tuple(payload.target_ids)))
        if not matching or not runs or state.tenant_id is None:
            return
        named = {r for records in matching for side in records for r in side}
        for run, kind, sources, targets in self._matched(state.tenant_id, runs, named):
            for mine in matching:
                if (set(sources), set(targets)) == (set(mine[0]), set(mine[1])):
                    continue  # the same item: deciding it in both runs is what twins are for
                both = [f"source record {r}" for r in mine[0] if r in sources]
                both += [f"target record {r}" for r in mine[1] if r in targets]
                if both:
                    raise StateError(
                        f"{both[0]} is already matched in run {run} ({kind}) with other records; "
                        "matching it here too would count it twice",
                        hint=f"reject this proposal instead: the record is accounted for in run {run}",
                    )

    def _matched(
        self, tenant: str, runs: list[str], records: Collection[str]
    ) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
        """The matches of ``runs``' current attempts (automatic, confirmed or by hand) that may hold one
        of ``records``: run, how it was matched, source and target ids (callers check the side). A
        match an earlier attempt made is gone (a retry starts the run's results afresh), so only
        events after each run's latest start or retry count. The JSON texts are searched for the
        records' JSON strings first (escaped as the domain writes them, and as UTF-8 as bulk events
        hold them), so only the few documents naming one are decoded."""
        needles = _json_strings(records)
        starts = [e.RECONCILIATION_STARTED, e.RECONCILIATION_RETRIED]
        kinds = [e.RECORD_MATCHED, e.MATCH_PROPOSED, e.RECORDS_MANUALLY_MATCHED, e.MATCH_CONFIRMED]
        frame = (
            self.store.read(event_types=[*starts, *kinds], tenant_id=tenant)
            .filter(pl.col("aggregate_id").is_in(runs))
            .filter(
                pl.col("event_type").is_in([*starts, e.MATCH_CONFIRMED])
                | pl.col("data").str.contains_any(needles)
            )
            .select("global_position", "aggregate_id", "event_type", "data")
            .collect()
        )
        latest = (
            frame.filter(pl.col("event_type").is_in(starts))
            .group_by("aggregate_id")
            .agg(pl.col("global_position").max().alias("_since"))
        )
        rows = (
            frame.filter(pl.col("event_type").is_in(kinds))
            .join(latest, on="aggregate_id", how="left")
            .filter(pl.col("global_position") > pl.col("_since").fill_null(0))
            .select("aggregate_id", "event_type", "data")
        )
        confirmed = {
            (run, json.loads(data)["match_id"])
            for run, kind, data in rows.iter_rows()
            if kind == e.MATCH_CONFIRMED
        }
        found = []
        for run, kind, data in rows.iter_rows():
            payload = json.loads(data)
            if kind == e.MATCH_PROPOSED and (run, payload["match_id"]) not in confirmed:
                continue  # still a proposal there: nobody matched it yet
            if kind != e.MATCH_CONFIRMED:
                how = {e.RECORD_MATCHED: "automatic", e.MATCH_PROPOSED: "confirmed"}.get(kind, "by hand")
                found.append((run, how, tuple(payload["source_ids"]), tuple(payload["target_ids"])))
        return found

    def completing(
        self, state: ReconciliationState, completion: agg.NewEvent, replaced: Collection[str], user: str
    ) -> Completing:
        """What ``state``'s run adds to its completion's batch (``completion`` applied), as ``user``:

        * the decisions other completed runs of its job made on items it holds open, rewritten to its
          own copies, in the order they were made (the runs it supersedes included: people's decisions
          on the days it reconciles again are not lost);
        * the dismissal of each of its unmatched records another of those runs matched, and of each
          unmatched record of those runs that it matched (not in the runs of ``replaced``, which it
          supersedes): such a record is accounted for, so it is no exception;
        * in those runs, the exceptions closed because a run of ``replaced`` matched their records
          opened again (their ``RecordUnmatched`` once more) and closed anew only if this run or
          another that counts matches them: a superseded run's matches account for nothing.

        Callers hold :meth:`lock` and append all of it in the completion's batch, so a review decision
        is either seen here or sees the run completed, and a crash leaves both or neither."""
        run_id, tenant = state.reconciliation_id, state.tenant_id
        if run_id is None or tenant is None:
            return Completing()
        builder = agg.StateBuilder(state)
        builder.apply(completion.event_type, completion.data(), run_id, tenant, state.correlation_id or "")
        decisions = self._taken_over(builder.freeze())
        for draft in decisions:
            builder.apply(draft.event_type, draft.data(), run_id, tenant, state.correlation_id or "")
        completed = builder.freeze()
        neighbours = [r for r in self.neighbours(completed) if r.reconciliation_id not in replaced]
        if not neighbours:
            return Completing(decisions=decisions)
        runs = [str(r.reconciliation_id) for r in neighbours]
        closed = agg.closed_by_matches(completed, self._matched_naming(tenant, runs, [completed]), user)
        reopening = self._reopening(tenant, neighbours, replaced)
        now = [_applied(r, reopening.get(str(r.reconciliation_id), [])) for r in neighbours]
        ours = self._matched_naming(tenant, [run_id], now)
        elsewhere = []
        for loaded, state_now in zip(neighbours, now, strict=True):
            reopened = reopening.get(str(loaded.reconciliation_id), [])
            matches = list(ours)
            if reopened:  # a run that counts may match it too: it closed nothing while it was closed
                others = [r for r in runs if r != loaded.reconciliation_id]
                matches += self._matched_naming(tenant, others, [_only_reopened(reopened)])
            drafts = [*reopened, *agg.closed_by_matches(state_now, matches, user)]
            if drafts:
                elsewhere.append((loaded, drafts))
        count = sum(len(r) for r in reopening.values())
        return Completing(decisions=decisions, closed=closed, elsewhere=elsewhere, reopened=count)

    def _reopening(
        self, tenant: str, neighbours: list[ReconciliationState], replaced: Collection[str]
    ) -> dict[str, list[agg.NewEvent]]:
        """By run of ``neighbours``: the ``RecordUnmatched`` events (as the run recorded them) of its
        exceptions still closed because a run of ``replaced`` matched their records."""
        if not replaced:
            return {}
        closed = {str(r.reconciliation_id): r for r in neighbours}
        dismissals = (
            self.store.read(event_types=[e.EXCEPTION_DISMISSED], tenant_id=tenant)
            .filter(pl.col("aggregate_id").is_in(sorted(closed)))
            .select("global_position", "aggregate_id", "data")
            .collect()
            .sort("global_position")
        )
        latest: dict[tuple[str, str], e.ExceptionDismissed] = {}
        for run, data in dismissals.select("aggregate_id", "data").iter_rows():
            payload = e.ExceptionDismissed.model_validate_json(data)
            latest[(run, payload.exception_id)] = payload  # the last dismissal of an item is what holds
        wanted: dict[str, set[str]] = {}
        for (run, exception_id), payload in latest.items():
            parsed = xid.parse(exception_id)
            if (
                closure_run(payload) in replaced
                and parsed.kind == xid.UNMATCHED
                and exception_id not in closed[run].open_exceptions
            ):
                wanted.setdefault(run, set()).add(exception_id)
        return {run: self._unmatched_events(tenant, run, ids) for run, ids in wanted.items()}

    def _unmatched_events(self, tenant: str, run: str, exception_ids: set[str]) -> list[agg.NewEvent]:
        """The ``RecordUnmatched`` events of ``run``'s current attempt for ``exception_ids``."""
        records = {xid.parse(x).key for x in exception_ids}
        needles = _json_strings(records)
        starts = [e.RECONCILIATION_STARTED, e.RECONCILIATION_RETRIED]
        frame = (
            self.store.read(event_types=[*starts, e.RECORD_UNMATCHED], tenant_id=tenant)
            .filter(pl.col("aggregate_id") == run)
            .filter(pl.col("event_type").is_in(starts) | pl.col("data").str.contains_any(needles))
            .select("global_position", "event_type", "data")
            .collect()
            .sort("global_position")
        )
        found: dict[str, agg.NewEvent] = {}
        for kind, data in frame.select("event_type", "data").iter_rows():
            if kind != e.RECORD_UNMATCHED:
                found.clear()  # a new attempt: the earlier one's records are gone
                continue
            payload = e.RecordUnmatched.model_validate_json(data)
            key = xid.unmatched(payload.side, payload.record_id)
            if key in exception_ids:
                found[key] = agg.NewEvent(e.RECORD_UNMATCHED, payload)
        return [found[k] for k in sorted(found)]

    def _matched_naming(
        self, tenant: str, runs: list[str], holding: list[ReconciliationState]
    ) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        """The matches of ``runs`` holding an open unmatched record of a run of ``holding``."""
        open_records = {
            xid.parse(key).key
            for state in holding
            for key in state.open_exceptions
            if key.startswith(xid.UNMATCHED + ":")
        }
        if not open_records:
            return []
        return [
            (run, sources, targets) for run, _, sources, targets in self._matched(tenant, runs, open_records)
        ]

    def _taken_over(self, completed: ReconciliationState) -> list[agg.NewEvent]:
        """The decisions the run ``completed`` describes takes over (see :meth:`completing`)."""
        run_id, tenant = completed.reconciliation_id, completed.tenant_id
        assert run_id is not None and tenant is not None
        if not completed.open_exceptions:
            return []
        # Cheap first: decisions are few (people make them); runs' states are loaded only if some exist.
        decided = (
            self.store.read(event_types=sorted(agg.DECISIONS), tenant_id=tenant)
            .filter(pl.col("aggregate_id") != run_id)
            .select("global_position", "aggregate_id", "event_type", "data")
            .collect()
        )
        if decided.height == 0:
            return []
        deciding = set(decided["aggregate_id"].to_list())
        nearby = {str(r.reconciliation_id) for r in self.neighbours(completed, deciding)}
        decided = decided.filter(pl.col("aggregate_id").is_in(sorted(nearby))).sort("global_position")
        if decided.height == 0:
            return []
        events = [
            (run, agg.NewEvent(kind, e.PAYLOADS[kind].model_validate_json(data)))
            for run, kind, data in decided.select("aggregate_id", "event_type", "data").iter_rows()
        ]
        records = self._proposals(tenant, nearby)
        decisions = [Decision(event, records.get((run, _proposal_of(event)))) for run, event in events]
        return inherited_decisions(completed, decisions)

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


def _applied(state: ReconciliationState, drafts: list[agg.NewEvent]) -> ReconciliationState:
    """``state`` with ``drafts`` applied."""
    if not drafts:
        return state
    builder = agg.StateBuilder(state)
    for draft in drafts:
        builder.apply(
            draft.event_type,
            draft.data(),
            state.reconciliation_id or "",
            state.tenant_id or "",
            state.correlation_id or "",
        )
    return builder.freeze()


def _only_reopened(drafts: list[agg.NewEvent]) -> ReconciliationState:
    """A stand-in holding only the exceptions ``drafts`` (``RecordUnmatched`` events) open."""
    opened = {}
    for draft in drafts:
        payload = draft.payload
        assert isinstance(payload, e.RecordUnmatched)
        opened[xid.unmatched(payload.side, payload.record_id)] = payload.reason
    return ReconciliationState(open_exceptions=opened)


def _json_strings(records: Collection[str]) -> list[str]:
    """The JSON strings of ``records`` as events hold them: escaped as the domain writes them, and as
    UTF-8 as bulk events do (to search the ``data`` texts for them)."""
    return sorted({canonical_json(r) for r in records} | {json.dumps(r, ensure_ascii=False) for r in records})
