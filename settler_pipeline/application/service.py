"""Command handlers: the write side of Settler.

Every handler validates the user's tenant-scoped role, loads the run (latest snapshot + later events),
lets the aggregate decide, appends the resulting events with the run's version as the expected version
(so concurrent commands on one run cannot both win), and then publishes them on the event bus. Nothing
changes state except appended events.

Idempotency: a command with an ``idempotency_key`` gets deterministic event ids, correlation and
causation ids derived from it, so sending it again appends nothing and returns the run as it is.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.adapters.loader import LoadedSide, check_side, load_side
from settler_pipeline.application import review, run_events
from settler_pipeline.application.access import AccessControl, Role
from settler_pipeline.application.bus import EventBus, PublishReport
from settler_pipeline.application.lease import LeaseState, RunLeases
from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.envelope import EventContext, EventEnvelope, EventMetadata
from settler_pipeline.domain.matching import match_records
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import (
    ConcurrencyError,
    NotFoundError,
    SettlerError,
    StateError,
    UserError,
    ValidationError,
)
from settler_pipeline.ids import new_id
from settler_pipeline.jobspec import DateRange, JobSpec, job_spec_from_mapping
from settler_pipeline.logs import get_logger

_log = get_logger(__name__)
RUN_STEPS = 5  # read source, read target, record the reads, match, append the results
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b7c6f0e-3d1a-4c55-9a43-8f0f2a6b1c01")


@dataclass
class RunOutcome:
    """What a command did to a run, and the run's state afterwards."""

    reconciliation_id: str
    status: str
    attempt: int
    version: int
    events_appended: int = 0
    repeated_command: bool = False  # the command had been handled before; nothing was appended
    summary: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    correlation_id: str | None = None
    publish_failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # what else the command did, for people

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    ) -> None:
        """``roots`` confines what job specs read (default: each spec's own directory only);
        ``leases`` tells a run whose process died from a running one (default: none, so a run's
        death is only noticed by the process itself)."""
        self.store = store
        self.access = access
        self.bus = bus or EventBus()
        self.roots = roots if roots is not None else InputRoots()
        self.leases = leases
        # Called with the step a run enters (the CLI shows it as a progress bar); None: silent.
        self.progress: Callable[[str, int, int], None] | None = None

    def _step(self, what: str, number: int) -> None:
        if self.progress is not None:
            self.progress(what, number, RUN_STEPS)

    # -- loading ------------------------------------------------------------------------------

    def load(self, reconciliation_id: str, *, as_of_position: int | None = None) -> ReconciliationState:
        """The run's state from its latest usable snapshot plus the events after it (no permission check;
        handlers check first)."""
        state = ReconciliationState()
        snapshot = self.store.get_latest_snapshot(
            reconciliation_id, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION
        )
        if snapshot is not None and (as_of_position is None or snapshot.global_position <= as_of_position):
            state = ReconciliationState.from_dict(snapshot.state)
        frame = self.store.stream_frame(
            reconciliation_id, e.AGGREGATE_TYPE, from_version=state.version + 1, as_of_position=as_of_position
        )
        return agg.fold_frame(state, frame)

    def state(
        self,
        reconciliation_id: str,
        *,
        user_id: str,
        as_of_position: int | None = None,
        as_of: datetime | None = None,
    ) -> ReconciliationState:
        """The run as it stood at a position or time (time travel), for a user with any role in its tenant."""
        position = as_of_position
        if as_of is not None:
            at_time = self.store.position_at(as_of)
            position = at_time if position is None else min(position, at_time)
        state = self.load(reconciliation_id, as_of_position=position)
        # A run in a tenant the user has no role in is reported as missing (never reveal other tenants).
        if (
            state.status == agg.NEW
            or state.tenant_id is None
            or self.access.role_of(user_id, state.tenant_id) is None
        ):
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
            # Same answer as a missing run: never reveal another tenant's runs.
            raise NotFoundError(f"reconciliation {cmd.reconciliation_id} does not exist in this tenant")
        return state

    # -- appending ----------------------------------------------------------------------------

    def _ids(self, cmd: c.Command, count: int) -> tuple[list[str], str | None, str]:
        """Event ids, correlation id and causation id for a command's events (deterministic when the
        command has an idempotency key)."""
        if cmd.idempotency_key is None:
            return [new_id() for _ in range(count)], cmd.correlation_id, cmd.command_id
        base = f"{type(cmd).__name__}:{cmd.tenant_id}:{cmd.idempotency_key}"
        ids = [str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{base}:event:{i}")) for i in range(count)]
        correlation = cmd.correlation_id or str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{base}:correlation"))
        return ids, correlation, str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{base}:command"))

    def _repeated(self, cmd: c.Command) -> ReconciliationState | None:
        """The run as it is now if this command was handled before (same idempotency key), else None."""
        if cmd.idempotency_key is None:
            return None
        first_id, _, _ = self._ids(cmd, 1)
        event = self.store.get_event(first_id[0])
        if event is None:
            return None
        state = self.load(event.aggregate_id)
        if state.tenant_id != cmd.tenant_id:  # pragma: no cover - ids are derived from the tenant
            raise NotFoundError("the idempotency key belongs to another tenant's run")
        return state

    def _append(
        self,
        cmd: c.RunCommand,
        state: ReconciliationState,
        drafts: list[agg.NewEvent],
    ) -> tuple[list[EventEnvelope], list[str]]:
        ids, correlation, causation = self._ids(cmd, len(drafts))
        correlation = state.correlation_id or correlation or new_id()
        now = datetime.now(UTC)
        envelopes = [
            EventEnvelope(
                id=event_id,
                aggregate_id=cmd.reconciliation_id,
                aggregate_type=e.AGGREGATE_TYPE,
                event_type=draft.event_type,
                data=draft.data(),
                metadata=EventMetadata(
                    tenant_id=cmd.tenant_id,
                    user_id=cmd.user_id,
                    timestamp=now,
                    correlation_id=correlation,
                    causation_id=causation,
                ),
            )
            for event_id, draft in zip(ids, drafts, strict=True)
        ]
        self.store.append(envelopes, expected_versions={cmd.reconciliation_id: state.version})
        report = self.bus.publish(envelopes)
        return envelopes, _failures(report)

    def _outcome(self, state: ReconciliationState, **extra: Any) -> RunOutcome:
        return RunOutcome(
            reconciliation_id=state.reconciliation_id or "",
            status=state.status,
            attempt=state.attempt,
            version=state.version,
            error=dict(state.last_error) if state.last_error else None,
            correlation_id=state.correlation_id,
            **extra,
        )

    def _simple(
        self, cmd: c.RunCommand, minimum: Role, action: str, decide: Any, **kwargs: Any
    ) -> RunOutcome:
        state = self._authorised_state(cmd, minimum, action)
        if (previous := self._repeated(cmd)) is not None:
            return self._outcome(previous, repeated_command=True)
        envelopes, failures = self._append(cmd, state, decide(state, cmd, **kwargs))
        state = agg.fold(state, envelopes)
        return self._outcome(state, events_appended=len(envelopes), publish_failures=failures)

    # -- commands -----------------------------------------------------------------------------

    def start(self, cmd: c.StartReconciliation, *, execute: bool = True) -> RunOutcome:
        """Start a run and execute it to completion (or failure): fetch both sides, match, record.
        With ``execute=False`` only the start is recorded (a queued run, which can be cancelled before
        :meth:`execute` runs it)."""
        spec = self._spec(cmd)
        state = self._authorised_state(cmd, "operator", "starting a reconciliation")
        if (previous := self._repeated(cmd)) is not None:
            self._same_start(cmd, spec, previous)
            previous = self.reclaim(previous, user_id=cmd.user_id)
            if _unfinished_business(previous):
                # The schedule re-sends the same command after a crash or an interruption: run it
                # again (a new attempt) instead of reporting a run that did not finish as handled. A
                # failure of the spec or its inputs stays handled: it needs a fix, then `retry`.
                retry = c.RetryReconciliation(
                    reconciliation_id=cmd.reconciliation_id
                    if previous.reconciliation_id is None
                    else previous.reconciliation_id,
                    tenant_id=cmd.tenant_id,
                    user_id=cmd.user_id,
                )
                return self.retry(retry)
            return self._outcome(previous, repeated_command=True, summary=self._summary(previous))
        self._check_inputs(spec)
        # A run of these days whose process died is abandoned here, so it neither blocks nor needs
        # superseding.
        live = [
            run
            for run in (
                self.reclaim(found, user_id=cmd.user_id)
                for found in self.live_runs(
                    cmd.tenant_id, cmd.job_id, cmd.date_range.start, cmd.date_range.end
                )
            )
            if run.reconciliation_id != cmd.reconciliation_id and run.status in agg.LIVE
        ]
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
        drafts = agg.decide_start(state, cmd, fingerprint=spec.fingerprint())
        with self._lease(cmd.reconciliation_id) if execute else contextlib.nullcontext():
            envelopes, failures = self._append(cmd, state, drafts)
            state = agg.fold(state, envelopes)
            for run in live:
                self._supersede(run, cmd)
            if not execute:
                return self._outcome(state, events_appended=len(envelopes), publish_failures=failures)
            return self._execute(state, spec, cmd.user_id, envelopes[-1].id, failures)

    def live_runs(self, tenant_id: str, job_id: str, start: date, end: date) -> list[ReconciliationState]:
        """The live runs (started, running or completed) of ``job_id`` in ``tenant_id`` whose days
        overlap ``start..end``: what a new run of those days would count twice with."""
        data = pl.col("data")
        starts = (
            self.store.read(event_types=[e.RECONCILIATION_STARTED])
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
        runs = [self.load(run_id) for run_id in sorted(set(starts["aggregate_id"].to_list()))]
        return [run for run in runs if run.status in agg.LIVE]

    def _others_live(self, state: ReconciliationState, user_id: str) -> list[ReconciliationState]:
        assert state.tenant_id and state.job_id and state.date_range
        start, end = (date.fromisoformat(d) for d in state.date_range)
        runs = self.live_runs(state.tenant_id, state.job_id, start, end)
        others = [run for run in runs if run.reconciliation_id != state.reconciliation_id]
        # a run whose process died does not count: it is abandoned on the way
        reclaimed = [self.reclaim(run, user_id=user_id) for run in others]
        return [run for run in reclaimed if run.status in agg.LIVE]

    def _supersede(self, run: ReconciliationState, cmd: c.StartReconciliation) -> None:
        """Mark ``run`` superseded by the run ``cmd`` started (retried if the run moved meanwhile)."""
        assert run.reconciliation_id is not None
        key = f"{cmd.idempotency_key}:supersedes:{run.reconciliation_id}" if cmd.idempotency_key else None
        supersede = c.SupersedeReconciliation(
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
                self._append(supersede, run, agg.decide_supersede(run, supersede))
                return
            except ConcurrencyError:
                if not tries_left:
                    raise
                run = self.load(run.reconciliation_id)

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
        spec = job_spec_from_mapping(
            dict(state.spec.get("spec", {})),
            base_dir=Path(state.spec.get("spec_dir") or "."),
            origin=f"the job spec of run {reconciliation_id}",
        )
        cause = self.store.stream_frame(reconciliation_id, e.AGGREGATE_TYPE)["event_id"][-1]
        self._check_inputs(spec)
        with self._lease(reconciliation_id):
            return self._execute(state, spec, user_id, str(cause), [])

    def retry(self, cmd: c.RetryReconciliation) -> RunOutcome:
        """Run a failed, cancelled or abandoned run again as a new attempt: with the command's job spec
        (read again from its file by the caller) when it has one, else with the spec it last ran with."""
        state = self._authorised_state(cmd, "operator", "retrying a reconciliation")
        if (previous := self._repeated(cmd)) is not None:
            return self._outcome(previous, repeated_command=True, summary=self._summary(previous))
        state = self.reclaim(state, user_id=cmd.user_id)
        if cmd.spec is not None:
            spec = job_spec_from_mapping(
                dict(cmd.spec), base_dir=Path(cmd.spec_dir or "."), origin=cmd.spec_path or "the job spec"
            )
        else:
            spec = job_spec_from_mapping(
                dict(state.spec.get("spec", {})),
                base_dir=Path(state.spec.get("spec_dir") or "."),
                origin=f"the job spec of run {cmd.reconciliation_id}",
            )
        drafts = agg.decide_retry(state, cmd, fingerprint=spec.fingerprint())
        if state.job_id and state.date_range and (live := self._others_live(state, cmd.user_id)):
            raise StateError(
                f"run {live[0].reconciliation_id} already reconciles these days of job {state.job_id!r}; "
                "retrying this one would count them twice",
                hint="start a new run with --supersede instead, or leave this one as it is",
            )
        self._check_inputs(spec)
        with self._lease(cmd.reconciliation_id):
            envelopes, failures = self._append(cmd, state, drafts)
            state = agg.fold(state, envelopes)
            return self._execute(state, spec, cmd.user_id, envelopes[-1].id, failures)

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
        ctx = self._run_context(state, user_id, cause=None)
        state, _ = self._append_run(state, run_events.single_event(drafts[0], ctx))
        if state.status == agg.ABANDONED:
            self.leases.clear(run_id)
        return state

    @contextlib.contextmanager
    def _lease(self, run_id: str) -> Iterator[None]:
        held = self.leases.hold(run_id) if self.leases is not None else contextlib.nullcontext()
        with held, _termination_raises():
            yield

    def _check_inputs(self, spec: JobSpec) -> None:
        """Refuse, before anything is appended, a spec whose inputs leave the allowed roots or whose
        mapping names columns an existing CSV lacks."""
        for side, side_spec in (("source", spec.source), ("target", spec.target)):
            check_side(side_spec, base_dir=spec.base_dir, roots=self.roots, side=side)

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

    def _same_start(self, cmd: c.StartReconciliation, spec: JobSpec, previous: ReconciliationState) -> None:
        """A start re-sent with an idempotency key must ask for the same run: same job, days and spec.
        Anything else is a mistake (a reused key), refused naming the earlier run."""
        first, _, _ = self._ids(cmd, 1)
        event = self.store.get_event(first[0])
        if event is None:  # pragma: no cover - _repeated found it
            return
        earlier = event.data
        wanted = {
            "job": cmd.job_id,
            "days": {"start": cmd.date_range.start.isoformat(), "end": cmd.date_range.end.isoformat()},
            "job spec": spec.fingerprint(),
        }
        had = {
            "job": earlier.get("job_id"),
            "days": earlier.get("date_range"),
            "job spec": earlier.get("spec_fingerprint"),
        }
        differs = [name for name in wanted if wanted[name] != had[name]]
        if differs:
            raise ValidationError(
                f"idempotency key {cmd.idempotency_key!r} was used for run {previous.reconciliation_id} "
                f"with a different {' and '.join(differs)}",
                hint="use a new --idempotency-key for a different run, or resend the same parameters",
            )

    # -- running ------------------------------------------------------------------------------

    def _spec(self, cmd: c.StartReconciliation) -> JobSpec:
        return job_spec_from_mapping(
            dict(cmd.spec), base_dir=Path(cmd.spec_dir or "."), origin=f"job {cmd.job_id}"
        )

    def _summary(self, state: ReconciliationState) -> dict[str, Any] | None:
        if state.reconciliation_id is None:
            return None
        frame = self.store.stream_frame(state.reconciliation_id, e.AGGREGATE_TYPE).filter(
            pl.col("event_type") == e.RECONCILIATION_COMPLETED
        )
        if not frame.height:
            return None
        summary: dict[str, Any] = json.loads(frame["data"][-1])["summary"]
        return summary

    def _execute(
        self, state: ReconciliationState, spec: JobSpec, user_id: str, cause: str, failures: list[str]
    ) -> RunOutcome:
        """Fetch, match and record one attempt. Appends in two atomic batches (fetch results, then the
        match results with the completion), each expecting the version it last saw: a cancel that lands
        in between wins, and this attempt stops without writing more."""
        progress = _Progress(state)
        ctx = self._run_context(state, user_id, cause)
        try:
            return self._attempt(progress, spec, ctx, failures)
        except Exception as exc:
            # Anything after the start, expected or not, ends the attempt on the record (never a run
            # left "running"); the domain decides whether a retry may help.
            return self._fail(progress.state, ctx, progress.step, exc)
        except BaseException as exc:
            # Ctrl-C or a termination signal: record the failure, then let the process stop.
            self._fail(progress.state, ctx, progress.step, exc)
            raise

    def _run_context(self, state: ReconciliationState, user_id: str, cause: str | None) -> EventContext:
        assert state.reconciliation_id and state.tenant_id
        return EventContext(
            aggregate_id=state.reconciliation_id,
            tenant_id=state.tenant_id,
            user_id=user_id,
            correlation_id=state.correlation_id,
            causation_id=cause,
            timestamp=datetime.now(UTC),
        )

    def _attempt(
        self, progress: _Progress, spec: JobSpec, ctx: EventContext, failures: list[str]
    ) -> RunOutcome:
        started = time.perf_counter()
        state = progress.state
        assert state.reconciliation_id and state.tenant_id and state.date_range
        run_id = state.reconciliation_id
        date_range = DateRange(
            start=date.fromisoformat(state.date_range[0]), end=date.fromisoformat(state.date_range[1])
        )
        appended = 0
        sides: dict[str, LoadedSide] = {}
        for side, side_spec in (("source", spec.source), ("target", spec.target)):
            progress.step = f"fetch_{side}"
            self._step(f"reading the {side} ({side_spec.adapter})", 0 if side == "source" else 1)
            sides[side] = load_side(
                side_spec,
                date_range=date_range,
                margin_days=spec.date_window_days,
                base_dir=spec.base_dir,
                side=side,
                roots=self.roots,
            )
        progress.step = "record_fetch"
        self._step("recording what was read", 2)
        batch = []
        for side, event_type in (("source", e.SOURCE_RECORDS_FETCHED), ("target", e.TARGET_RECORDS_FETCHED)):
            loaded = sides[side]
            payload = e.RecordsFetched(
                attempt=state.attempt,
                adapter=(spec.source if side == "source" else spec.target).adapter,
                count=loaded.records.height,
                quarantined_count=loaded.quarantine.height,
                out_of_window_count=loaded.out_of_window,
                total_rows=loaded.total_rows,
                fetch_duration_ms=loaded.duration_ms,
            )
            batch.append(run_events.single_event(e.NewEvent(event_type, payload), ctx))
            batch.append(run_events.quarantine_events(side, loaded, state.attempt, ctx))
        state, count = self._append_run(state, pl.concat(batch))
        progress.state = state
        appended += count
        if state.status == agg.CANCELLED:
            return self._outcome(state, events_appended=appended)
        progress.step = "match"
        self._step(
            f"matching {sides['source'].records.height:,} against {sides['target'].records.height:,}", 3
        )
        try:
            result = match_records(
                sides["source"].records,
                sides["target"].records,
                spec.matching,
                run_id=run_id,
                on_pass=lambda name, i, n: self._step(f"matching: pass {i + 1} of {n} ({name})", 3),
            )
        except SettlerError as exc:
            return self._fail(state, ctx, "match", exc)
        progress.step = "record_results"
        summary = agg.summarise(
            result,
            source_records=sides["source"].records.height,
            source_quarantined=sides["source"].quarantine.height,
            target_records=sides["target"].records.height,
            target_quarantined=sides["target"].quarantine.height,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )
        completed = agg.decide_completion(state, summary)
        results = pl.concat(
            [
                run_events.match_events(result, state.attempt, ctx, sides),
                run_events.unmatched_events(result, state.attempt, ctx, sides),
                run_events.duplicate_events(result, state.attempt, ctx),
                run_events.single_event(completed, ctx),
            ]
        )
        self._step(f"appending {results.height:,} events", 4)
        state, count = self._append_run(state, results)
        appended += count
        self._step("done", RUN_STEPS)
        return self._outcome(
            state,
            events_appended=appended,
            summary=summary.model_dump() if state.status == agg.COMPLETED else None,
            publish_failures=failures,
        )

    def _append_run(self, state: ReconciliationState, frame: pl.DataFrame) -> tuple[ReconciliationState, int]:
        assert state.reconciliation_id
        try:
            positions = self.store.append_frame(
                frame, expected_versions={state.reconciliation_id: state.version}
            )
        except ConcurrencyError:
            _log.info("run changed meanwhile; this attempt stops", extra=_fields(state))
            return self.load(state.reconciliation_id), 0
        self._publish_lifecycle(frame, positions)
        folded = agg.fold_frame(state, frame)
        _log.info(
            "events appended",
            extra={**_fields(folded), "events": len(positions), "head": positions[-1] if positions else None},
        )
        return folded, len(positions)

    def _publish_lifecycle(self, frame: pl.DataFrame, positions: list[int]) -> PublishReport:
        """Publish a run batch's lifecycle events (per-record events reach read models through the log;
        pushing a million of them through Python callbacks would defeat the columnar path)."""
        lifecycle = frame.with_columns(pl.Series("global_position", positions, dtype=pl.Int64)).filter(
            ~pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES))
        )
        envelopes = [
            EventEnvelope(
                id=row["event_id"],
                aggregate_id=row["aggregate_id"],
                aggregate_type=row["aggregate_type"],
                event_type=row["event_type"],
                data=json.loads(row["data"]),
                metadata=EventMetadata(
                    tenant_id=row["tenant_id"],
                    user_id=row["user_id"],
                    timestamp=row["timestamp"],
                    correlation_id=row["correlation_id"],
                    causation_id=row["causation_id"],
                ),
                global_position=row["global_position"],
            )
            for row in lifecycle.iter_rows(named=True)
        ]
        return self.bus.publish(envelopes)

    def _fail(
        self,
        state: ReconciliationState,
        ctx: EventContext,
        step: str,
        exc: BaseException,
    ) -> RunOutcome:
        failure = agg.decide_failure(state, exc, step=step)
        data = failure.data()
        _log.warning(
            "run failed: %s",
            data["error"]["message"],
            extra={
                **_fields(state),
                "step": step,
                "error": type(exc).__name__,
                "retryable": data["retryable"],
            },
        )
        frame = run_events.single_event(failure, ctx)
        state, count = self._append_run(state, frame)
        return self._outcome(state, events_appended=count)


def _user_error_names(kind: type[BaseException] = UserError) -> set[str]:
    return {kind.__name__}.union(*(_user_error_names(sub) for sub in kind.__subclasses__()))


def _unfinished_business(state: ReconciliationState) -> bool:
    """Whether the attempt ended without deciding anything: abandoned, or failed on an interruption
    or an internal error (not on a problem of the spec or its inputs, which a re-run repeats)."""
    if state.status == agg.ABANDONED:
        return True
    error_type = (state.last_error or {}).get("type")
    return state.status == agg.FAILED and error_type not in _user_error_names()


@dataclass
class _Progress:
    """Where an executing attempt is: the state it last appended and the step it is in."""

    state: ReconciliationState
    step: str = "start"


@contextlib.contextmanager
def _termination_raises() -> Iterator[None]:
    """While a run executes, turn SIGTERM and SIGHUP into :class:`SystemExit` (as Ctrl-C already is a
    KeyboardInterrupt) so the attempt records its failure before the process ends. Only in the main
    thread, and only where nobody (such as Dagster) installed a handler of their own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _fields(state: ReconciliationState) -> dict[str, Any]:
    """What a log line about a run carries: enough to find the run and its events."""
    return {
        "run_id": state.reconciliation_id,
        "tenant": state.tenant_id,
        "job": state.job_id,
        "attempt": state.attempt,
        "status": state.status,
    }


def _failures(report: PublishReport) -> list[str]:
    return [f"{f.subscriber} failed on {f.event_type} {f.event_id}: {f.error}" for f in report.failures]
