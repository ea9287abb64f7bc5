"""In-process event bus: subscribers by event type, each isolated from the others' failures."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from settler_pipeline.domain.envelope import EventEnvelope

log = logging.getLogger(__name__)

Handler = Callable[[EventEnvelope], None]
ALL = "*"


@dataclass(frozen=True)
class SubscriberFailure:
    """One subscriber that raised on one event."""

    subscriber: str
    event_id: str
    event_type: str
    error: str


@dataclass
class PublishReport:
    """What happened when events were published: delivered count and failures (never swallowed)."""

    delivered: int = 0
    failures: list[SubscriberFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class EventBus:
    """Delivers appended events to subscribers, after they are durably in the log.

    A failing subscriber is logged and reported in the :class:`PublishReport`; the others still receive
    the event, and the events stay in the log (projections can always catch up from it)."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: str, handler: Handler) -> None:
        """Call ``handler`` for every published event of ``event_type`` (``"*"`` for every type)."""
        self._handlers[event_type].append(handler)

    def publish(self, events: Sequence[EventEnvelope]) -> PublishReport:
        """Deliver ``events`` in order to their subscribers."""
        report = PublishReport()
        for event in events:
            for handler in [*self._handlers.get(event.event_type, []), *self._handlers.get(ALL, [])]:
                try:
                    handler(event)
                    report.delivered += 1
                except Exception as exc:  # isolation is the point: one subscriber must not stop the rest
                    name = getattr(handler, "__qualname__", repr(handler))
                    log.error("subscriber %s failed on %s %s: %s", name, event.event_type, event.id, exc)
                    report.failures.append(SubscriberFailure(name, event.id, event.event_type, repr(exc)))
        return report
