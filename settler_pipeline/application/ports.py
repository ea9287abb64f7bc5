"""Ports: what the application needs from the world, named as protocols.

The handlers are written against these, not against a concrete store, so the same code runs on the
Parquet/DuckDB event store in production and on :class:`~settler_pipeline.store.memory.InMemoryEventLog`
in fast tests; one contract suite (``tests/unit/test_event_log_contract.py``) holds both to the same
promises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.domain.events import NewEvent
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


class Closing(Protocol):
    """What a run's completion adds to its batch: the review decisions it takes over from other runs of
    its job, found under the lock review decisions on the job hold."""

    def lock(self, state: ReconciliationState) -> AbstractContextManager[None]:
        """The lock review decisions on ``state``'s job hold."""
        ...

    def taken_over(self, state: ReconciliationState, completion: NewEvent) -> list[NewEvent]:
        """The decisions ``state``'s run takes over once ``completion`` is applied."""
        ...
