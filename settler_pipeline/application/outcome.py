"""What a command did to a run, as handlers report it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from settler_pipeline.domain.reconciliation import ReconciliationState


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


def outcome(state: ReconciliationState, **extra: Any) -> RunOutcome:
    """The outcome of a command that left the run in ``state`` (``extra``: what else it did)."""
    return RunOutcome(
        reconciliation_id=state.reconciliation_id or "",
        status=str(state.status),  # a plain string: callers put it into JSON and Dagster metadata
        attempt=state.attempt,
        version=state.version,
        error=dict(state.last_error) if state.last_error else None,
        correlation_id=state.correlation_id,
        **extra,
    )
