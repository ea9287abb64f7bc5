"""Ports: what the application needs from the world, named as protocols.

The handlers are written against these, not against a concrete store, so the same code runs on the
Parquet/DuckDB event store in production and on :class:`~settler_pipeline.store.memory.InMemoryEventLog`
in fast tests; one contract suite (``tests/unit/test_event_log_contract.py``) holds both to the same
promises.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.domain.events import RECORD_UNMATCHED, NewEvent
from settler_pipeline.domain.reconciliation import ReconciliationState


class StoredSnapshot(Protocol):
    """A stream's folded state after ``aggregate_version`` (at ``global_position`` in the log)."""

    @property
    def aggregate_version(self) -> int: ...

    @property
    def global_position(self) -> int: ...

    @property
    def schema_version(self) -> int: ...

    @property
    def state(self) -> dict[str, Any]: ...


class EventLog(Protocol):
    """An append-only, totally ordered log of event envelopes with per-stream versions.

    Promises every implementation keeps: positions are ``1..head`` with no gap, in commit order; a
    batch is appended all or nothing; ``expected_versions`` ({stream: version}, 0 = new) is checked
    atomically with the append (:class:`~settler_pipeline.errors.ConcurrencyError` otherwise);
    re-appending events whose ids are already in the log with the same content returns their original
    positions, with other content raises :class:`~settler_pipeline.errors.DuplicateEventError`; reads
    come back upcast to the current event versions."""

    @property
    def head_position(self) -> int: ...

    def close(self) -> None: ...

    def append(
        self,
        events: Sequence[EventEnvelope] | pl.DataFrame,
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[int]: ...

    def append_frame(
        self, frame: pl.DataFrame, expected_versions: Mapping[str, int] | None = None
    ) -> list[int]: ...

    def get_event(self, event_id: str) -> EventEnvelope | None: ...

    def get_events(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        to_version: int | None = None,
        *,
        as_of_position: int | None = None,
        as_of: datetime | None = None,
    ) -> list[EventEnvelope]: ...

    def stream_frame(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        *,
        as_of_position: int | None = None,
    ) -> pl.DataFrame: ...

    def correlation_frame(
        self, correlation_id: str, *, as_of_position: int | None = None
    ) -> pl.DataFrame: ...

    def read(
        self,
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        *,
        as_of: datetime | None = None,
    ) -> pl.LazyFrame: ...

    def position_at(self, when: datetime) -> int: ...

    def save_snapshot(
        self,
        aggregate_id: str,
        aggregate_type: str,
        aggregate_version: int,
        state: Mapping[str, Any],
        *,
        schema_version: int,
        global_position: int | None = None,
    ) -> None: ...

    def get_latest_snapshot(
        self, aggregate_id: str, aggregate_type: str, *, schema_version: int | None = None
    ) -> StoredSnapshot | None: ...


@dataclass(frozen=True)
class Completing:
    """What a run's completion adds to its batch (see :class:`Closing`)."""

    decisions: list[NewEvent] = field(default_factory=list)
    """Review decisions other runs made on items it holds, taken over as its own."""
    closed: list[NewEvent] = field(default_factory=list)
    """Its unmatched records other runs matched, closed."""
    elsewhere: list[tuple[ReconciliationState, list[NewEvent]]] = field(default_factory=list)
    """Other runs (as loaded) and what is appended to each: their exceptions opened again (a superseded
    run's matches account for nothing) and their unmatched records this run or another matched, closed."""
    reopened: int = 0
    """How many exceptions of other runs are opened again."""

    def details(self) -> dict[str, Any]:
        """What the run's outcome tells people of these: decisions taken over, its own exceptions
        closed because other runs matched their records, the runs whose exceptions it closed."""
        details: dict[str, Any] = {}
        if self.decisions:
            details["decisions_taken_over"] = len(self.decisions)
        if self.closed:
            details["matched_elsewhere"] = len(self.closed)
        closing = [
            run for run, drafts in self.elsewhere if any(d.event_type != RECORD_UNMATCHED for d in drafts)
        ]
        if closing:
            details["closed_in"] = ", ".join(sorted(str(run.reconciliation_id) for run in closing))
        if self.reopened:
            details["reopened_elsewhere"] = self.reopened
        return details


class Closing(Protocol):
    """What a run's completion adds to its batch: the review decisions it takes over from other runs of
    its job and the exceptions closed because another run matched their records, found under the lock
    review decisions on the job hold."""

    def lock(self, state: ReconciliationState) -> AbstractContextManager[None]:
        """The lock review decisions on ``state``'s job hold."""
        ...

    def completing(
        self, state: ReconciliationState, completion: NewEvent, replaced: Collection[str], user: str
    ) -> Completing:
        """What ``state``'s run adds once ``completion`` is applied, as ``user`` (the runs of
        ``replaced``, which the completion supersedes, get no events)."""
        ...
