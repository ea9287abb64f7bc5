"""Idempotent commands: a command with an ``idempotency_key`` gets event ids, a correlation id and a
causation id derived from it (UUIDv5), so sending it again finds its first event in the log and
appends nothing; a start re-sent with the same key must ask for the same run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import polars as pl

from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import NotFoundError, UserError, ValidationError
from settler_pipeline.ids import new_id
from settler_pipeline.jobspec import JobSpec

IDEMPOTENCY_NAMESPACE = uuid.UUID("5b7c6f0e-3d1a-4c55-9a43-8f0f2a6b1c01")


class Idempotency:
    """Ids for a command's events, and what the log says about a command sent before (``load``
    reads a run's current state)."""

    def __init__(self, store: EventLog, load: Callable[[str], ReconciliationState]) -> None:
        self.store = store
        self.load = load

    def ids(self, cmd: c.Command, count: int) -> tuple[list[str], str | None, str]:
        """Event ids, correlation id and causation id for a command's events (deterministic when the
        command has an idempotency key)."""
        if cmd.idempotency_key is None:
            return [new_id() for _ in range(count)], cmd.correlation_id, cmd.command_id
        base = f"{type(cmd).__name__}:{cmd.tenant_id}:{cmd.idempotency_key}"
        ids = [str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{base}:event:{i}")) for i in range(count)]
        correlation = cmd.correlation_id or str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{base}:correlation"))
        return ids, correlation, str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{base}:command"))

    def repeated(self, cmd: c.Command) -> ReconciliationState | None:
        """The run as it is now if this command was handled before (same idempotency key), else None."""
        if cmd.idempotency_key is None:
            return None
        first_id, _, _ = self.ids(cmd, 1)
        event = self.store.get_event(first_id[0])
        if event is None:
            return None
        state = self.load(event.aggregate_id)
        if state.tenant_id != cmd.tenant_id:  # pragma: no cover - ids are derived from the tenant
            raise NotFoundError("the idempotency key belongs to another tenant's run")
        return state

    def same_start(self, cmd: c.StartReconciliation, spec: JobSpec, previous: ReconciliationState) -> None:
        """A start re-sent with an idempotency key must ask for the same run: same job, days and spec.
        Anything else is a mistake (a reused key), refused naming the earlier run."""
        first, _, _ = self.ids(cmd, 1)
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

    def summary(self, state: ReconciliationState) -> dict[str, Any] | None:
        """The summary the run's last completion recorded (what a repeated command reports), if any."""
        if state.reconciliation_id is None:
            return None
        frame = self.store.stream_frame(state.reconciliation_id, e.AGGREGATE_TYPE).filter(
            pl.col("event_type") == e.RECONCILIATION_COMPLETED
        )
        if not frame.height:
            return None
        summary: dict[str, Any] = json.loads(frame["data"][-1])["summary"]
        return summary


def _user_error_names(kind: type[BaseException] = UserError) -> set[str]:
    return {kind.__name__}.union(*(_user_error_names(sub) for sub in kind.__subclasses__()))


def unfinished_business(state: ReconciliationState) -> bool:
    """Whether a repeated start's run ended its attempt without deciding anything (so the repeat runs it
    again): abandoned, or failed on an interruption or an internal error (not on a problem of the spec
    or its inputs, which a re-run repeats)."""
    if state.status == agg.ABANDONED:
        return True
    error_type = (state.last_error or {}).get("type")
    return state.status == agg.FAILED and error_type not in _user_error_names()
