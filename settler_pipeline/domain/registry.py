"""Registry of event types, their current schema versions, and upcasters from older versions.

An event is stored with the ``event_version`` it was written with and is never rewritten on disk.
On read, an older version is upcast step by step (v1 → v2 → … → current) by registered pure functions.
An event type nobody registered reads back unchanged as a raw envelope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.errors import SettlerError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class EventTypeInfo:
    """What the registry knows about one event type."""

    event_type: str
    current_version: int
    # from_version -> fn(data) returning the data at from_version + 1
    upcasters: dict[int, Upcaster] = field(default_factory=dict)


class EventRegistry:
    """Event types with schema versions and upcasters; see the module docstring."""

    def __init__(self) -> None:
        self._types: dict[str, EventTypeInfo] = {}

    def register(self, event_type: str, current_version: int = 1) -> None:
        """Declare ``event_type`` at ``current_version`` (re-registering may only raise the version)."""
        info = self._types.get(event_type)
        if info is None:
            self._types[event_type] = EventTypeInfo(event_type, current_version)
        else:
            info.current_version = max(info.current_version, current_version)

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator registering ``fn(data) -> data`` turning version ``from_version`` into the next."""

        def decorate(fn: Upcaster) -> Upcaster:
            self.add_upcaster(event_type, from_version, fn)
            return fn

        return decorate

    def add_upcaster(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """Register ``fn`` to upcast ``event_type`` data from ``from_version`` to ``from_version + 1``."""
        info = self._types.setdefault(event_type, EventTypeInfo(event_type, from_version + 1))
        info.current_version = max(info.current_version, from_version + 1)
        info.upcasters[from_version] = fn

    def is_registered(self, event_type: str) -> bool:
        return event_type in self._types

    def current_version(self, event_type: str) -> int | None:
        info = self._types.get(event_type)
        return None if info is None else info.current_version

    def upcast(self, envelope: EventEnvelope) -> EventEnvelope:
        """Return ``envelope`` with its data at the current version of its type.

        Unregistered types and current versions come back unchanged. A missing step in the chain is an
        error (silently returning old-shaped data would be misread downstream)."""
        info = self._types.get(envelope.event_type)
        if info is None or envelope.event_version >= info.current_version:
            return envelope
        data = dict(envelope.data)
        version = envelope.event_version
        while version < info.current_version:
            step = info.upcasters.get(version)
            if step is None:
                raise SettlerError(
                    f"no upcaster registered for {envelope.event_type} v{version} -> v{version + 1}",
                    hint="register one with EventRegistry.add_upcaster",
                )
            data = step(data)
            version += 1
        return envelope.model_copy(update={"data": data, "event_version": version})


default_registry = EventRegistry()
"""The process-wide registry the domain registers its event types in."""
