"""Command handlers: the write side of Settler.

Every handler validates the user's tenant-scoped role, loads the run (latest snapshot + later events),
lets the aggregate decide, appends the resulting events with the run's version as the expected version
(so concurrent commands on one run cannot both win), and then publishes them on the event bus. Nothing
changes state except appended events.

Around them: :mod:`.idempotency` (repeated commands append nothing), :mod:`.coverage` and
:mod:`.start_lock` (each job, tenant and day counts once), :mod:`.attempt`, :mod:`.lease` (dead runs).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.adapters.loader import check_spec
from settler_pipeline.application import review, run_events
from settler_pipeline.application.access import AccessControl, Role
from settler_pipeline.application.attempt import RUN_STEPS, AttemptRunner
from settler_pipeline.application.bus import EventBus, PublishReport
from settler_pipeline.application.command_events import command_envelopes, expected_versions
from settler_pipeline.application.coverage import blocking_runs, live_runs
from settler_pipeline.application.idempotency import IDEMPOTENCY_NAMESPACE, Idempotency, unfinished_business
from settler_pipeline.application.lease import LeaseState, RunLeases
from settler_pipeline.application.outcome import RunOutcome, outcome
from settler_pipeline.application.ports import EventLog
from settler_pipeline.application.run_spec import run_spec
from settler_pipeline.application.run_states import load_run
from settler_pipeline.application.shared_items import SharedItems
from settler_pipeline.application.start_lock import StartLocks
from settler_pipeline.application.termination import termination_raises
from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import ConcurrencyError, NotFoundError, StateError
from settler_pipeline.ids import new_id
from settler_pipeline.jobspec import JobSpec, job_spec_from_mapping
from settler_pipeline.logs import get_logger
from settler_pipeline.store.batch import as_of_limit

_log = get_logger(__name__)

_DECISION_TRIES = 20
"""Most times a review decision or cancel is decided when other writers keep moving its run: each refused
try means another command's append landed, so this many reviewers can decide one run at once."""

Shared = dict[str, tuple[ReconciliationState, list[agg.NewEvent]]] | None  # other runs' copies, by id


class ReconciliationService:
    """The application API for runs: start, retry, cancel, review, and state as of a time."""

    def __init__(
        self,
        store: EventLog,
        access: AccessControl,
        bus: EventBus | None = None,
        *,
        roots: InputRoots | None = None,
        leases: RunLeases | None = None,
        start_locks: StartLocks | None = None,
        max_memory: int | None = None,
        work_dir: Path | None = None,
    ) -> None:
        """``roots`` confines what job specs read (default: each spec's own directory only);
        ``leases`` tells a run whose process died from a running one (default: none, so a run's
        death is only noticed by the process itself); ``start_locks`` make the check that a job's days
        count once and the start's append one step across processes (default: none, for a log used by
        one process); ``max_memory`` (bytes) is the most resident memory a run may use (default: only
        the process's own limits); ``work_dir`` holds runs' spilled inputs (default: system temp)."""
        self.store = store
        self.access = access
        self.bus = bus or EventBus()
        self.roots = roots if roots is not None else InputRoots()
        self.leases = leases
        self.start_locks = start_locks
        # Called with the step a run enters (the CLI shows it as a progress bar); None: silent.
        self.progress: Callable[[str, int, int], None] | None = None
        self.idempotency = Idempotency(store, self.load)
        self.shared = SharedItems(store, self.load, self.start_locks)
        self.attempts = AttemptRunner(
            store,
            self.bus,
            self.tenant_roots,
            load=self.load,
            step=self._step,
            max_memory=max_memory,
            work_dir=work_dir,
            closing=self.shared,
        )

    def _step(self, what: str, number: int) -> None:
        if self.progress is not None:
            self.progress(what, number, RUN_STEPS)

    def load(self, reconciliation_id: str, *, as_of_position: int | None = None) -> ReconciliationState:
        """The run's state from its latest usable snapshot plus the events after it (no permission check;
        handlers check first; see :func:`.run_states.load_run`)."""
        return load_run(self.store, reconciliation_id, as_of_position=as_of_position)

    def state(
        self,
        reconciliation_id: str,
        *,
        user_id: str,
        as_of_position: int | None = None,
        as_of: datetime | None = None,
    ) -> ReconciliationState:
        """The run as it stood at a position or time (time travel), for a user with any role in its tenant."""
        position = as_of_limit(as_of_position, as_of, self.store.position_at)
        state = self.load(reconciliation_id, as_of_position=position)
        # A run in a tenant the user has no role in is reported as missing (never reveal other tenants).
        tenant = state.tenant_id
        if state.status == agg.NEW or tenant is None or self.access.role_of(user_id, tenant) is None:
            raise NotFoundError(
                f"reconciliation {reconciliation_id} does not exist (at that point in time) "
                f"or is not visible to {user_id!r}",
                hint="check the id; runs are visible to users with a role in their tenant",
            )
        return state

    def _authorised_state(self, cmd: c.RunCommand, minimum: Role, action: str) -> ReconciliationState:
        self.access.require(cmd.user_id, cmd.tenant_id, minimum, action)
        state = self.load(cmd.reconciliation_id)
        if state.tenant_id is not None and state.tenant_id != cmd.tenant_id:
            if isinstance(cmd, c.StartReconciliation):  # the id is taken: the same answer as in any tenant
                raise agg.run_id_in_use(cmd.reconciliation_id)
            # Same answer as a missing run: never reveal another tenant's runs.
            raise NotFoundError(f"reconciliation {cmd.reconciliation_id} does not exist in this tenant")
        return state

    def _append(
        self, cmd: c.RunCommand, state: ReconciliationState, drafts: list[agg.NewEvent], shared: Shared = None
    ) -> tuple[list[EventEnvelope], list[str]]:
        """Append ``drafts`` to the command's run and ``shared``'s decisions to theirs, in one atomic batch
        with each run's version expected."""
        streams = [(state, drafts), *(shared or {}).values()]
        ids, correlation, causation = self.idempotency.ids(cmd, sum(len(d) for _, d in streams))
        envelopes = command_envelopes(cmd, streams, ids, correlation or new_id(), causation)
        self.store.append(envelopes, expected_versions=expected_versions(cmd, streams))
        return envelopes, _failures(self.bus.publish(envelopes))

    def _simple(
        self, cmd: c.RunCommand, minimum: Role, action: str, decide: Any, **kwargs: Any
    ) -> RunOutcome:
        """Decide ``cmd`` on the run as it is now and append the decision. Another writer may append to
        the run between this read and the append (a reviewer deciding other items, the run's attempt or
        its completion): the append is then refused whole, and the command is decided again on the run
        as it has become, so independent decisions all land and one that no longer applies is refused
        saying why (an item decided meanwhile, a run that finished)."""
        for _ in range(_DECISION_TRIES - 1):
            with contextlib.suppress(ConcurrencyError):
                return self._decide_once(cmd, minimum, action, decide, **kwargs)
        try:
            return self._decide_once(cmd, minimum, action, decide, **kwargs)
        except ConcurrencyError:
            raise StateError(
                f"reconciliation {cmd.reconciliation_id} kept changing while this command was decided "
                f"({_DECISION_TRIES} tries); nothing was written",
                hint="run the command again",
            ) from None

    def _decide_once(
        self, cmd: c.RunCommand, minimum: Role, action: str, decide: Any, **kwargs: Any
    ) -> RunOutcome:
        state = self._authorised_state(cmd, minimum, action)
        if (previous := self.idempotency.repeated(cmd)) is not None:
            return outcome(previous, repeated_command=True)
        drafts = decide(state, cmd, **kwargs)
        job = state.job_id if agg.DECISIONS & {d.event_type for d in drafts} else None  # see _run
        with self._start_lock(cmd.tenant_id, job):
            envelopes, failures = self._append(cmd, state, drafts, shared := self.shared.twins(state, drafts))
        state = agg.fold(state, [x for x in envelopes if x.aggregate_id == cmd.reconciliation_id])
        details = {"also_decided_in": ", ".join(sorted(shared))} if shared else {}
        return outcome(state, events_appended=len(envelopes), publish_failures=failures, details=details)

    def start(self, cmd: c.StartReconciliation, *, execute: bool = True) -> RunOutcome:
        """Start a run and execute it to completion (or failure): fetch both sides, match, record.
        With ``execute=False`` only the start is recorded (a queued run, which can be cancelled before
        :meth:`execute` runs it)."""
        spec = self._spec(cmd)
        state = self._authorised_state(cmd, "operator", "starting a reconciliation")
        if (previous := self.idempotency.repeated(cmd)) is not None:
            return self._repeated_start(cmd, spec, previous)
        if state.status != agg.NEW:  # refused before anything else, as another tenant's id is
            raise agg.run_id_in_use(cmd.reconciliation_id)
        self._check_inputs(spec, cmd.tenant_id)
        # The lease first (it is the run's own), then the job's start lock: from the check of live
        # runs to the start's append no other start of this job can slip in (start_lock.py).
        with contextlib.ExitStack() as leased:
            try:
                leased.enter_context(
                    self._lease(cmd.reconciliation_id) if execute else contextlib.nullcontext()
                )
            except StateError:
                # the run's id comes from the key: the same command is starting in another process
                if (previous := self._started_elsewhere(cmd)) is None:
                    raise
                return self._repeated_start(cmd, spec, previous)
            with self._start_lock(cmd.tenant_id, cmd.job_id):
                # the same command sent twice at once: the other one may have started it meanwhile
                if (previous := self.idempotency.repeated(cmd)) is None:
                    # a run of these days whose process died is abandoned here: it blocks nothing
                    found = self.live_runs(
                        cmd.tenant_id, cmd.job_id, cmd.date_range.start, cmd.date_range.end
                    )
                    live = blocking_runs(cmd, [self.reclaim(run, user_id=cmd.user_id) for run in found])
                    # they stay live until this run completes (coverage.superseding)
                    replaced = [str(run.reconciliation_id) for run in live]
                    drafts = agg.decide_start(state, cmd, fingerprint=spec.fingerprint(), supersedes=replaced)
                    envelopes, failures = self._append(cmd, state, drafts)
                    state = agg.fold(state, envelopes)
            if previous is None:
                if not execute:
                    return outcome(state, events_appended=len(envelopes), publish_failures=failures)
                return self._run(state, spec, cmd.user_id, envelopes[-1].id, failures)
        return self._repeated_start(cmd, spec, previous)

    def _started_elsewhere(
        self, cmd: c.StartReconciliation, wait_s: float = 5.0
    ) -> ReconciliationState | None:
        """The run ``cmd`` started in another process, once that start is in the log (its start lock
        held while it appends, so waiting for the lock waits for the append); ``None`` if none comes."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._start_lock(cmd.tenant_id, cmd.job_id):
                if (previous := self.idempotency.repeated(cmd)) is not None or time.monotonic() > deadline:
                    return previous
            time.sleep(0.05)

    def _repeated_start(
        self, cmd: c.StartReconciliation, spec: JobSpec, previous: ReconciliationState
    ) -> RunOutcome:
        """A start whose idempotency key is in the log already: the earlier run, or (when that run did
        not finish) a new attempt of it."""
        self.idempotency.same_start(cmd, spec, previous)
        previous = self.reclaim(previous, user_id=cmd.user_id)
        if unfinished_business(previous):
            # The schedule re-sends the same command after a crash or an interruption: run it again (a
            # new attempt) instead of reporting a run that did not finish as handled. A failure of the
            # spec or its inputs stays handled: it needs a fix, then `retry`.
            retry = c.RetryReconciliation(
                reconciliation_id=cmd.reconciliation_id
                if previous.reconciliation_id is None
                else previous.reconciliation_id,
                tenant_id=cmd.tenant_id,
                user_id=cmd.user_id,
            )
            return self.retry(retry)
        return outcome(previous, repeated_command=True, summary=self.idempotency.summary(previous))

    def live_runs(self, tenant_id: str, job_id: str, start: date, end: date) -> list[ReconciliationState]:
        """The live runs of ``job_id`` in ``tenant_id`` whose days overlap ``start..end``."""
        return live_runs(self.store, self.load, tenant_id, job_id, start, end)

    def _others_live(self, state: ReconciliationState, user_id: str) -> list[ReconciliationState]:
        assert state.tenant_id and state.job_id and state.date_range
        start, end = (date.fromisoformat(d) for d in state.date_range)
        runs = self.live_runs(state.tenant_id, state.job_id, start, end)
        mine = {state.reconciliation_id, *state.supersedes}  # itself, and the runs it is to replace
        others = [run for run in runs if run.reconciliation_id not in mine]
        # a run whose process died does not count: it is abandoned on the way
        reclaimed = [self.reclaim(run, user_id=user_id) for run in others]
        return [run for run in reclaimed if run.status in agg.LIVE]

    def execute(self, reconciliation_id: str, *, user_id: str) -> RunOutcome:
        """Execute a queued run (one started with ``execute=False``) as ``user_id`` (operator)."""
        state = self.load(reconciliation_id)
        if state.status == agg.NEW or state.tenant_id is None:
            raise NotFoundError(f"reconciliation {reconciliation_id} does not exist")
        self.access.require(user_id, state.tenant_id, "operator", "running a reconciliation")
        if state.status != agg.STARTED:
            raise StateError(
                f"reconciliation {reconciliation_id} is {state.status}; only a queued run is executed"
            )
        spec = run_spec(state)
        cause = self.store.stream_frame(reconciliation_id, e.AGGREGATE_TYPE)["event_id"][-1]
        self._check_inputs(spec, state.tenant_id)
        with self._lease(reconciliation_id):
            return self._run(state, spec, user_id, str(cause), [])

    def retry(self, cmd: c.RetryReconciliation) -> RunOutcome:
        """Run a failed, cancelled or abandoned run again as a new attempt: with the command's job spec
        (read again from its file by the caller) when it has one, else with the spec it last ran with."""
        state = self._authorised_state(cmd, "operator", "retrying a reconciliation")
        if (previous := self.idempotency.repeated(cmd)) is not None:
            return outcome(previous, repeated_command=True, summary=self.idempotency.summary(previous))
        state = self.reclaim(state, user_id=cmd.user_id)
        if cmd.spec is not None:
            spec = job_spec_from_mapping(
                dict(cmd.spec), base_dir=Path(cmd.spec_dir or "."), origin=cmd.spec_path or "the job spec"
            )
        else:
            spec = run_spec(state)
        supplied = spec.name if cmd.spec is not None else None  # a spec the command brings
        drafts = agg.decide_retry(state, cmd, fingerprint=spec.fingerprint(), job_id=supplied)
        self._check_inputs(spec, cmd.tenant_id)
        with self._lease(cmd.reconciliation_id):
            with self._start_lock(cmd.tenant_id, state.job_id):
                if state.job_id and state.date_range and (live := self._others_live(state, cmd.user_id)):
                    raise StateError(
                        f"run {live[0].reconciliation_id} already reconciles these days of job "
                        f"{state.job_id!r}; retrying this one would count them twice",
                        hint="start a new run with --supersede instead, or leave this one as it is",
                    )
                envelopes, failures = self._append(cmd, state, drafts)
            state = agg.fold(state, envelopes)
            return self._run(state, spec, cmd.user_id, envelopes[-1].id, failures)

    def _run(
        self, before: ReconciliationState, spec: JobSpec, user_id: str, cause: str, failures: list[str]
    ) -> RunOutcome:
        """Run an attempt of ``before``'s run; its completion takes over the review decisions other runs
        of its job made on items it shares with them (shared_items.py), in the same batch."""
        return self.attempts.run(before, spec, user_id, cause, failures)

    def reclaim(self, state: ReconciliationState, *, user_id: str) -> ReconciliationState:
        """The run, marked ``abandoned`` first if it is started or running but the process executing
        it is gone (its lease expired); otherwise unchanged."""
        run_id = state.reconciliation_id
        if run_id is None or state.status not in (agg.STARTED, agg.RUNNING):
            return state
        if self.leases is None or self.leases.state(run_id) != LeaseState.EXPIRED:
            return state
        drafts = agg.decide_abandon(
            state,
            reason="the process executing this attempt stopped before recording how it ended "
            "(killed, out of memory, or its lease was not renewed)",
            detected_by=user_id,
        )
        ctx = self.attempts.context(state, user_id, cause=None)
        state, _ = self.attempts.append(state, run_events.single_event(drafts[0], ctx))
        if state.status == agg.ABANDONED:
            self.leases.clear(run_id)
        return state

    def _start_lock(self, tenant_id: str, job_id: str | None) -> contextlib.AbstractContextManager[None]:
        locks = self.start_locks
        return contextlib.nullcontext() if locks is None or job_id is None else locks.hold(tenant_id, job_id)

    @contextlib.contextmanager
    def _lease(self, run_id: str) -> Iterator[None]:
        held = self.leases.hold(run_id) if self.leases is not None else contextlib.nullcontext()
        with held, termination_raises():
            yield

    def tenant_roots(self, tenant_id: str) -> InputRoots:
        """The input roots of tenant ``tenant_id``'s runs (``{tenant}`` roots name its own folder)."""
        return self.roots.for_tenant(self.access.tenant_names()[tenant_id])

    def _check_inputs(self, spec: JobSpec, tenant_id: str) -> None:
        """Refuse, before anything is appended, a spec whose inputs leave the tenant's allowed roots,
        whose mapping names columns an existing CSV lacks or whose sides disagree on a currency's digits."""
        check_spec(spec, self.tenant_roots(tenant_id))  # one read of the access file for both sides

    def cancel(self, cmd: c.CancelReconciliation) -> RunOutcome:
        """Cancel a run that has not finished."""
        return self._simple(cmd, "operator", "cancelling a reconciliation", agg.decide_cancel)

    def confirm(self, cmd: c.ConfirmMatch) -> RunOutcome:
        """Confirm a proposed match."""
        return self._simple(cmd, "operator", "reviewing exceptions", agg.decide_confirm)

    def reject(self, cmd: c.RejectMatch) -> RunOutcome:
        """Reject a proposed match; its records reopen as exceptions."""
        return self._simple(cmd, "operator", "reviewing exceptions", agg.decide_reject)

    def match_manually(self, cmd: c.MatchManually) -> RunOutcome:
        """Match open unmatched records by hand."""
        key = f"{cmd.reconciliation_id}:manual:{sorted(cmd.source_ids)}:{sorted(cmd.target_ids)}"
        match_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, key))
        state = self._authorised_state(cmd, "operator", "reviewing exceptions")
        facts: dict[str, Any] = {}
        if state.status == agg.COMPLETED:
            self.shared.refuse_records_of_others(state, cmd.source_ids, cmd.target_ids)
            facts = review.manual_match_facts(
                review.RunDetails(self.store, state),
                list(cmd.source_ids),
                list(cmd.target_ids),
                accept_difference=cmd.accept_difference,
                note=cmd.note,
            )
        return self._simple(
            cmd, "operator", "reviewing exceptions", agg.decide_manual_match, match_id=match_id, facts=facts
        )

    def dismiss(self, cmd: c.DismissException) -> RunOutcome:
        """Close an exception without a match."""
        return self._simple(cmd, "operator", "reviewing exceptions", agg.decide_dismiss)

    def _spec(self, cmd: c.StartReconciliation) -> JobSpec:
        return job_spec_from_mapping(
            dict(cmd.spec), base_dir=Path(cmd.spec_dir or "."), origin=f"job {cmd.job_id}"
        )


def _failures(report: PublishReport) -> list[str]:
    return [f"{f.subscriber} failed on {f.event_type} {f.event_id}: {f.error}" for f in report.failures]
