"""A command's events as envelopes, addressed to the runs they concern.

A command usually writes to its own run only; a review decision on an item two runs share also
writes to the other run (:mod:`settler_pipeline.domain.reconciliation.shared`). Either way the events
are one batch: ids from the command (deterministic with an idempotency key), one timestamp, and on
each run that run's correlation id, so every event of a run carries the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.domain.reconciliation import ReconciliationState

Streams = Sequence[tuple[ReconciliationState, Sequence[e.NewEvent]]]
"""Each run a command writes to (its state before the command) with the events it gets."""


def command_envelopes(
    cmd: c.RunCommand, streams: Streams, ids: Sequence[str], correlation: str, causation: str
) -> list[EventEnvelope]:
    """The envelopes of ``streams``' events in order, numbered with ``ids`` (one per event);
    ``correlation`` is used for a run that has none yet (a start)."""
    if len(ids) != sum(len(drafts) for _, drafts in streams):
        raise ValueError("one event id per event is needed")
    now = datetime.now(UTC)
    numbered = iter(ids)
    return [
        EventEnvelope(
            id=next(numbered),
            aggregate_id=run.reconciliation_id or cmd.reconciliation_id,
            aggregate_type=e.AGGREGATE_TYPE,
            event_type=draft.event_type,
            data=draft.data(),
            metadata=EventMetadata(
                tenant_id=cmd.tenant_id,
                user_id=cmd.user_id,
                timestamp=now,
                correlation_id=run.correlation_id or correlation,
                causation_id=causation,
            ),
        )
        for run, drafts in streams
        for draft in drafts
    ]


def expected_versions(cmd: c.RunCommand, streams: Streams) -> dict[str, int]:
    """Each run's version before the command: the append fails if another command wrote first."""
    return {run.reconciliation_id or cmd.reconciliation_id: run.version for run, _ in streams}
