"""Decide: what a command on a run emits, or why it is refused. Pure: no storage, no clock.

Each function returns the events to append as :class:`~settler_pipeline.domain.events.NewEvent`
values (a type name and its payload model), or raises :class:`StateError` / :class:`NotFoundError` /
:class:`ValidationError` when the run's state forbids the command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain.reconciliation.state import ReconciliationState
from settler_pipeline.domain.reconciliation.status import (
    COMPLETED,
    FINISHED,
    LIVE,
    NEW,
    RETRYABLE,
    RUNNING,
    STARTED,
)
from settler_pipeline.errors import NotFoundError, StateError, ValidationError


def run_id_in_use(reconciliation_id: str) -> StateError:
    """The refusal of a start whose run id is taken: one answer whichever tenant's run holds it (its
    status and tenant stay unsaid, so a start reveals nothing of another tenant's runs)."""
    return StateError(
        f"reconciliation {reconciliation_id} already exists: a run id is used once",
        hint="use a new run id (leave --run-id out to get one), or `settler retry RUN_ID` for a failed "
        "or cancelled run of yours",
    )


def decide_start(
    state: ReconciliationState,
    cmd: c.StartReconciliation,
    *,
    fingerprint: str,
    supersedes: Sequence[str] = (),
) -> list[e.NewEvent]:
    """Start a new run; refused if the run id is already in use. ``supersedes``: the live runs of the
    same days the new run replaces when it completes (only with ``cmd.supersede``)."""
    if supersedes and not cmd.supersede:
        raise StateError("a run replaces other runs only when started with supersede")
    if state.status != NEW:
        raise run_id_in_use(cmd.reconciliation_id)
    data = e.ReconciliationStarted(
        job_id=cmd.job_id,
        source_adapter=cmd.source_adapter,
        target_adapter=cmd.target_adapter,
        date_range=e.DateRangeData(
            start=cmd.date_range.start.isoformat(), end=cmd.date_range.end.isoformat()
        ),
        initiated_by=cmd.user_id,
        attempt=1,
        spec_fingerprint=fingerprint,
        spec=cmd.spec,
        spec_dir=cmd.spec_dir,
        spec_path=cmd.spec_path,
        supersedes=sorted(supersedes),
    )
    return [e.NewEvent(e.RECONCILIATION_STARTED, data)]


def _not_retried_hint(status: str, reconciliation_id: str) -> str:
    """What to do instead of retrying the run ``reconciliation_id`` in ``status``."""
    if status == COMPLETED:
        return "a completed run's days are reconciled again by a new run started with --supersede"
    if status in (STARTED, RUNNING):
        return "wait for it to finish (`settler runs` shows it), or cancel it and then retry it"
    return f"see its status with `settler state {reconciliation_id}`; review the run that replaced it"


def decide_retry(
    state: ReconciliationState,
    cmd: c.RetryReconciliation,
    *,
    fingerprint: str | None = None,
    job_id: str | None = None,
) -> list[e.NewEvent]:
    """Retry only a failed, cancelled or abandoned run (with the spec read again, when the command has
    one: ``job_id`` is that spec's name, which must be the run's job)."""
    _require_exists(state, cmd)
    if state.status not in RETRYABLE:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is {state.status}; "
            "only a failed, cancelled or abandoned run can be retried",
            hint=_not_retried_hint(str(state.status), cmd.reconciliation_id),
        )
    if job_id is not None and job_id != state.job_id:
        # Another job's spec would reconcile that job's days under this run's job: the days of the
        # other job would count twice and this job's would still be missing.
        raise ValidationError(
            f"reconciliation {cmd.reconciliation_id} is a run of job {state.job_id!r}; the spec given "
            f"is job {job_id!r}",
            hint=f"retry it with a spec named {state.job_id!r}, or start job {job_id!r} with "
            "`settler reconcile`",
        )
    data = e.ReconciliationRetried(attempt=state.attempt + 1, retried_by=cmd.user_id)
    if cmd.spec is not None:
        data = data.model_copy(
            update={
                "spec": cmd.spec,
                "spec_dir": cmd.spec_dir,
                "spec_path": cmd.spec_path,
                "spec_fingerprint": fingerprint,
            }
        )
    return [e.NewEvent(e.RECONCILIATION_RETRIED, data, omit_none=True)]


def decide_abandon(state: ReconciliationState, *, reason: str, detected_by: str) -> list[e.NewEvent]:
    """Record that the attempt's process died; only a run still started or running can be abandoned."""
    if state.status not in (STARTED, RUNNING):
        raise StateError(f"reconciliation {state.reconciliation_id} is {state.status}; it is not abandoned")
    data = e.ReconciliationAbandoned(
        attempt=state.attempt,
        reason=reason,
        step=reached_step(state),
        detected_by=detected_by,
    )
    return [e.NewEvent(e.RECONCILIATION_ABANDONED, data)]


def reached_step(state: ReconciliationState) -> str:
    """The furthest step of an unfinished attempt its events show (the names of
    ``ReconciliationFailed.step``): ``start`` while nothing after the start is recorded (checking or
    reading the inputs), ``match`` once the reads are recorded, ``record_results`` once results of a
    block are."""
    if state.status == STARTED:
        return "start"
    n = state.counts
    return "record_results" if n.matched + n.proposed + n.unmatched_source + n.unmatched_target else "match"


def decide_cancel(state: ReconciliationState, cmd: c.CancelReconciliation) -> list[e.NewEvent]:
    """Cancel only a run that has not finished."""
    _require_exists(state, cmd)
    if state.status in FINISHED:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is already {state.status}; it cannot be cancelled",
            hint="only a run that has not finished can be cancelled; see it with "
            f"`settler state {cmd.reconciliation_id}` (a completed run's days are redone by a new run "
            "with --supersede)",
        )
    data = e.ReconciliationCancelled(attempt=state.attempt, reason=cmd.reason, cancelled_by=cmd.user_id)
    return [e.NewEvent(e.RECONCILIATION_CANCELLED, data)]


def decide_supersede(state: ReconciliationState, cmd: c.SupersedeReconciliation) -> list[e.NewEvent]:
    """Supersede only a live run (started, running or completed), and never by itself."""
    _require_exists(state, cmd)
    if state.status not in LIVE:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is {state.status}; only a live run can be superseded"
        )
    if cmd.superseded_by == cmd.reconciliation_id:
        raise ValidationError("a run cannot supersede itself")
    data = e.ReconciliationSuperseded(
        attempt=state.attempt,
        superseded_by=cmd.superseded_by,
        superseded_by_user=cmd.user_id,
        reason=cmd.reason,
    )
    return [e.NewEvent(e.RECONCILIATION_SUPERSEDED, data)]


def _distinct(ids: list[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        article = "an" if what[0] in "aeiou" else "a"
        raise ValidationError(f"{article} {what} is listed twice", hint="list each id once")


def decide_confirm(state: ReconciliationState, cmd: c.ConfirmMatch) -> list[e.NewEvent]:
    """Confirm open proposals of a completed run (every one must be open)."""
    _distinct(cmd.match_ids, "match id")
    for match_id in cmd.match_ids:
        _require_open_proposal(state, cmd, match_id)
    return [
        e.NewEvent(e.MATCH_CONFIRMED, e.MatchConfirmed(match_id=m, confirmed_by=cmd.user_id))
        for m in cmd.match_ids
    ]


def decide_reject(state: ReconciliationState, cmd: c.RejectMatch) -> list[e.NewEvent]:
    """Reject open proposals; their records reopen as exceptions."""
    _distinct(cmd.match_ids, "match id")
    for match_id in cmd.match_ids:
        _require_open_proposal(state, cmd, match_id)
    return [
        e.NewEvent(e.MATCH_REJECTED, e.MatchRejected(match_id=m, reason=cmd.reason, rejected_by=cmd.user_id))
        for m in cmd.match_ids
    ]


def decide_manual_match(
    state: ReconciliationState,
    cmd: c.MatchManually,
    *,
    match_id: str,
    facts: Mapping[str, Any] | None = None,
) -> list[e.NewEvent]:
    """Match open unmatched records by hand; every record must be an open unmatched exception.
    ``facts`` are the checked amounts, currency and difference the event records (see
    :func:`settler_pipeline.application.review.manual_match_facts`)."""
    _require_reviewable(state, cmd)
    for side, ids in (("source", cmd.source_ids), ("target", cmd.target_ids)):
        if len(set(ids)) != len(ids):
            raise ValidationError(f"a {side} record id is listed twice")
        for record_id in ids:
            if xid.unmatched(side, record_id) not in state.open_exceptions:
                raise StateError(
                    f"{side} record {record_id} is not an open unmatched exception of this run",
                    hint="only records left unmatched can be matched by hand (see `settler review list "
                    f"{cmd.reconciliation_id}`)",
                )
    data = e.RecordsManuallyMatched(
        match_id=match_id,
        source_ids=list(cmd.source_ids),
        target_ids=list(cmd.target_ids),
        note=cmd.note,
        matched_by=cmd.user_id,
        **dict(facts or {}),
    )
    return [e.NewEvent(e.RECORDS_MANUALLY_MATCHED, data, omit_none=True)]


def decide_dismiss(state: ReconciliationState, cmd: c.DismissException) -> list[e.NewEvent]:
    """Close open exceptions without a match (every one must be open)."""
    _require_reviewable(state, cmd)
    _distinct(cmd.exception_ids, "exception id")
    for exception_id in cmd.exception_ids:
        if exception_id not in state.open_exceptions:
            raise NotFoundError(
                f"no open exception {exception_id!r} in reconciliation {cmd.reconciliation_id}",
                hint=f"list open items with `settler review list {cmd.reconciliation_id}`",
            )
    return [
        e.NewEvent(
            e.EXCEPTION_DISMISSED,
            e.ExceptionDismissed(exception_id=x, reason=cmd.reason, dismissed_by=cmd.user_id),
        )
        for x in cmd.exception_ids
    ]


def _require_exists(state: ReconciliationState, cmd: c.RunCommand) -> None:
    if state.status == NEW:
        raise NotFoundError(
            f"reconciliation {cmd.reconciliation_id} does not exist",
            hint="list runs with `settler runs`",
        )


def _require_open_proposal(state: ReconciliationState, cmd: c.RunCommand, match_id: str) -> None:
    _require_reviewable(state, cmd)
    if match_id not in state.open_proposals:
        raise NotFoundError(
            f"no open proposed match {match_id} in reconciliation {cmd.reconciliation_id}",
            hint=f"list open items with `settler review list {cmd.reconciliation_id}`",
        )


def _require_reviewable(state: ReconciliationState, cmd: c.RunCommand) -> None:
    _require_exists(state, cmd)
    if state.status != COMPLETED:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is {state.status}; only a completed run is reviewed"
        )
