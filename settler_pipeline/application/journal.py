"""The run journal: a subscriber of the event bus that writes one log line per run decision.

Every lifecycle and review event a command appends (a run started, retried, completed, failed,
cancelled, superseded or abandoned; a proposal confirmed or rejected; records matched by hand; an
exception dismissed) becomes one INFO line (WARNING for failures and abandoned runs) with the run,
tenant, user and the decision's key facts as structured fields, so an operator can follow what
happened in the process's log (or Dagster's run log) without opening the event log. The log stays the
record; the journal is a view of it for people, and a failure inside it never affects a command.
"""

from __future__ import annotations

from typing import Any, Final

from settler_pipeline.application.bus import ALL, EventBus
from settler_pipeline.domain import events as e
from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.logs import get_logger

_log = get_logger("settler_pipeline.journal")

_WARN: Final = (e.RECONCILIATION_FAILED, e.RECONCILIATION_ABANDONED)
_FACTS: Final[dict[str, tuple[str, ...]]] = {
    e.RECONCILIATION_STARTED: ("job_id", "attempt"),
    e.RECONCILIATION_RETRIED: ("attempt",),
    e.RECONCILIATION_FAILED: ("attempt", "step", "retryable"),
    e.RECONCILIATION_CANCELLED: ("attempt", "reason"),
    e.RECONCILIATION_SUPERSEDED: ("attempt", "superseded_by"),
    e.RECONCILIATION_ABANDONED: ("attempt", "reason"),
    e.MATCH_CONFIRMED: ("match_id",),
    e.MATCH_REJECTED: ("match_id", "reason"),
    e.RECORDS_MANUALLY_MATCHED: ("match_id",),
    e.EXCEPTION_DISMISSED: ("exception_id", "reason"),
}


def describe(event: EventEnvelope) -> tuple[str, dict[str, Any]]:
    """The journal's message and fields for ``event``."""
    data = event.data
    fields: dict[str, Any] = {
        "run_id": event.aggregate_id,
        "tenant": event.metadata.tenant_id,
        "user": event.metadata.user_id,
        "event": event.event_type,
        "position": event.global_position,
    }
    fields.update({key: data[key] for key in _FACTS.get(event.event_type, ()) if key in data})
    if event.event_type == e.RECONCILIATION_COMPLETED:
        summary = data.get("summary", {})
        fields.update({k: summary.get(k) for k in ("match_rate", "matched_count", "proposed_count")})
    if event.event_type == e.RECONCILIATION_FAILED:
        fields["error"] = data.get("error", {}).get("type")
        return f"run failed: {data.get('error', {}).get('message', '')}", fields
    return event.event_type, fields


def record(event: EventEnvelope) -> None:
    """Write ``event``'s journal line (lifecycle and review events; per-record events are skipped)."""
    if event.event_type in e.BULK_EVENT_TYPES:
        return
    message, fields = describe(event)
    if event.event_type in _WARN:
        _log.warning(message, extra=fields)
    else:
        _log.info(message, extra=fields)


def subscribe(bus: EventBus) -> None:
    """Put the journal on ``bus``."""
    bus.subscribe(ALL, record)
