"""An event log held in memory: the :class:`~settler_pipeline.application.ports.EventLog` port without
files, for fast handler tests and throw-away dry runs.

It keeps every promise of the Parquet/DuckDB store that the application relies on (gap-free positions
in commit order, all-or-nothing batches, expected versions, idempotent retries, upcasting, time travel)
and validates batches with the same code (:func:`~settler_pipeline.store.schema.prepare_frame`), so a
handler that passes on it behaves the same on disk. Nothing survives the process, by design.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope, as_utc
from settler_pipeline.domain.registry import EventRegistry, default_registry
from settler_pipeline.errors import ConcurrencyError, ValidationError
from settler_pipeline.ids import validate_uuid
from settler_pipeline.store.batch import as_of_limit, number_batch, retried_positions, upcast_rows
from settler_pipeline.store.envelopes import frame_to_envelopes
from settler_pipeline.store.payloads import prepare_typed_frame
from settler_pipeline.store.schema import (
    COLUMNS,
    POLARS_SCHEMA,
    envelopes_to_frame,
    prepare_frame,
)


@dataclass(frozen=True)
class MemorySnapshot:
    """A stream's state after ``aggregate_version``, kept in memory."""

    aggregate_id: str
    aggregate_type: str
    aggregate_version: int
    schema_version: int
    global_position: int
    state: dict[str, Any]
    created_at: datetime


class InMemoryEventLog:
    """The event log port in memory; thread-safe, one process."""

    def __init__(self, *, registry: EventRegistry | None = None) -> None:
        self.registry = registry or default_registry
        self._rows = pl.DataFrame(schema=POLARS_SCHEMA)
        self._position_of: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._snapshots: list[MemorySnapshot] = []
        self._lock = threading.Lock()

    def __enter__(self) -> InMemoryEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; present so callers can treat every log alike."""

    @property
    def head_position(self) -> int:
        """The newest position (0 for an empty log)."""
        return self._rows.height

    # -- appending -----------------------------------------------------------------------------------

    def append(
        self,
        events: Sequence[EventEnvelope] | pl.DataFrame,
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[int]:
        """Append a batch atomically; same contract as the on-disk store's ``append``."""
        now = datetime.now(UTC)
        if isinstance(events, pl.DataFrame):
            frame = prepare_typed_frame(events, now=now)
        else:
            events = list(events)
            if not all(isinstance(event, EventEnvelope) for event in events):
                raise ValidationError("append takes EventEnvelope objects or a columnar batch")
            frame = prepare_frame(envelopes_to_frame(events), now=now)
        expected = {
            validate_uuid("expected_versions key", k): int(v) for k, v in (expected_versions or {}).items()
        }
        with self._lock:
            existing = self._existing(frame)
            if existing is not None:
                return existing
            for stream, version in expected.items():
                actual = self._versions.get(stream, 0)
                if actual != version:
                    raise ConcurrencyError(stream, version, actual)
            return self._commit(frame, now)

    def append_frame(
        self, frame: pl.DataFrame, expected_versions: Mapping[str, int] | None = None
    ) -> list[int]:
        """Columnar append; same contract as :meth:`append`."""
        return self.append(frame, expected_versions)

    def _existing(self, frame: pl.DataFrame) -> list[int] | None:
        """Original positions for an idempotent retry, ``None`` for new events, or an error for a clash."""
        known = [i for i in frame["event_id"].to_list() if i in self._position_of]
        if not known:
            return None
        return retried_positions(frame, self._rows.filter(pl.col("event_id").is_in(known)))

    def _commit(self, frame: pl.DataFrame, now: datetime) -> list[int]:
        if frame.height == 0:
            return []
        head = self._rows.height
        last = self._rows["created_at"].max() if head else None
        created_at = max(now, last) if isinstance(last, datetime) else now
        # the in-memory log keeps the envelope columns only (readers decode payloads from ``data``)
        stored = number_batch(frame, head=head, created_at=created_at, versions=self._versions).select(
            COLUMNS
        )
        self._rows = pl.concat([self._rows, stored], how="vertical")
        for event_id, position in stored.select("event_id", "global_position").iter_rows():
            self._position_of[event_id] = position
        latest = stored.group_by("aggregate_id").agg(pl.col("aggregate_version").max())
        self._versions.update(dict(latest.iter_rows()))
        return [int(p) for p in stored["global_position"]]

    # -- reading -------------------------------------------------------------------------------------

    def get_event(self, event_id: str) -> EventEnvelope | None:
        """The event with this id (upcast), or ``None``."""
        position = self._position_of.get(validate_uuid("event_id", event_id).lower())
        if position is None:
            return None
        return self._envelopes(self._rows.slice(position - 1, 1))[0]

    def get_events(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        to_version: int | None = None,
        *,
        as_of_position: int | None = None,
        as_of: datetime | None = None,
    ) -> list[EventEnvelope]:
        """One stream's events in version order, upcast; optionally a version range and a past state."""
        rows = self._stream(aggregate_id, aggregate_type, from_version, to_version)
        limit = as_of_limit(as_of_position, as_of, self.position_at)
        if limit is not None:
            rows = rows.filter(pl.col("global_position") <= limit)
        return self._envelopes(rows)

    def stream_frame(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        *,
        as_of_position: int | None = None,
    ) -> pl.DataFrame:
        """One stream's stored rows in version order, upcast (``data`` as JSON text)."""
        rows = self._stream(aggregate_id, aggregate_type, from_version, None)
        if as_of_position is not None:
            rows = rows.filter(pl.col("global_position") <= as_of_position)
        return upcast_rows(rows, self.registry)

    def correlation_frame(self, correlation_id: str, *, as_of_position: int | None = None) -> pl.DataFrame:
        """One flow's rows in log order, as stored."""
        wanted = validate_uuid("correlation_id", correlation_id).lower()
        rows = self._rows.filter(pl.col("correlation_id") == wanted)
        if as_of_position is not None:
            rows = rows.filter(pl.col("global_position") <= as_of_position)
        return rows

    def read(
        self,
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        *,
        as_of: datetime | None = None,
    ) -> pl.LazyFrame:
        """The log after ``from_position`` (up to ``to_position`` / ``as_of``) in position order."""
        frame = self._rows.lazy().filter(pl.col("global_position") > from_position)
        limit = as_of_limit(to_position, as_of, self.position_at)
        if limit is not None:
            frame = frame.filter(pl.col("global_position") <= limit)
        if event_types is not None:
            frame = frame.filter(pl.col("event_type").is_in(list(event_types)))
        if tenant_id is not None:
            frame = frame.filter(pl.col("tenant_id") == validate_uuid("tenant_id", tenant_id).lower())
        return frame

    def position_at(self, when: datetime) -> int:
        """The newest position committed at or before ``when`` (0 if none)."""
        newest = self._rows.filter(pl.col("created_at") <= as_utc(when))["global_position"].max()
        return int(newest) if isinstance(newest, int) else 0

    # -- snapshots -----------------------------------------------------------------------------------

    def save_snapshot(
        self,
        aggregate_id: str,
        aggregate_type: str,
        aggregate_version: int,
        state: Mapping[str, Any],
        *,
        schema_version: int,
        global_position: int | None = None,
    ) -> None:
        """Keep a snapshot of a stream's state after ``aggregate_version``."""
        snapshot = MemorySnapshot(
            aggregate_id=validate_uuid("aggregate_id", aggregate_id).lower(),
            aggregate_type=aggregate_type,
            aggregate_version=aggregate_version,
            schema_version=schema_version,
            global_position=global_position or 0,
            state=dict(state),
            created_at=datetime.now(UTC),
        )
        with self._lock:
            self._snapshots.append(snapshot)

    def get_latest_snapshot(
        self, aggregate_id: str, aggregate_type: str, *, schema_version: int | None = None
    ) -> MemorySnapshot | None:
        """The newest snapshot of a stream (only of ``schema_version`` when given), or ``None``."""
        wanted = validate_uuid("aggregate_id", aggregate_id).lower()
        found = [
            s
            for s in self._snapshots
            if s.aggregate_id == wanted
            and s.aggregate_type == aggregate_type
            and (schema_version is None or s.schema_version == schema_version)
        ]
        return max(found, key=lambda s: s.aggregate_version, default=None)

    # -- helpers -------------------------------------------------------------------------------------

    def _stream(
        self, aggregate_id: str, aggregate_type: str, low: int | None, high: int | None
    ) -> pl.DataFrame:
        wanted = validate_uuid("aggregate_id", aggregate_id).lower()
        return self._rows.filter(
            (pl.col("aggregate_id") == wanted)
            & (pl.col("aggregate_type") == aggregate_type)
            & pl.col("aggregate_version").is_between(low or 1, high if high is not None else 2**62)
        ).sort("aggregate_version")

    def _envelopes(self, rows: pl.DataFrame) -> list[EventEnvelope]:
        return [self.registry.upcast(event) for event in frame_to_envelopes(rows)]
