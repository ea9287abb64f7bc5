"""The write side of the log: small commits to the write-ahead tail, big batches straight to segments
committed by one Delta commit each (which publishes them). Every commit records the new head before it
returns."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa

from settler_pipeline.domain.envelope import EventEnvelope, validate_name
from settler_pipeline.errors import (
    ConcurrencyError,
    ValidationError,
)
from settler_pipeline.files import fsync_dir
from settler_pipeline.ids import validate_uuid
from settler_pipeline.store import limits, wal
from settler_pipeline.store.batch import number_batch
from settler_pipeline.store.head import write_head
from settler_pipeline.store.lookups import LogLookups
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.payloads import (
    brought_payload_columns,
    prepare_typed_frame,
    with_payload_columns,
)
from settler_pipeline.store.schema import (
    COLUMNS,
    EVENT_SCHEMA,
    POLARS_SCHEMA,
    envelope_columns,
    envelopes_to_frame,
    prepare_frame,
)
from settler_pipeline.store.segments import BULK_ROW_GROUP_SIZE, split, write_segments
from settler_pipeline.store.segments import ROW_GROUP_SIZE as SEGMENT_ROW_GROUP_SIZE
from settler_pipeline.store.stream_copies import index_rows, write_copies
from settler_pipeline.store.tail import Tail
from settler_pipeline.store.view import LogView
from settler_pipeline.store.writer_types import AppendResult

_log = logging.getLogger("settler_pipeline.store.event_store")
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LogWriter(LogLookups):
    """Appends and publishes: positions and versions are assigned under the write lock."""

    def publish(self) -> int:
        """Publish every committed event into the Delta table: the write-ahead tail is moved into
        segments, whose Delta commit publishes them (every segment commit is a Delta commit). Returns
        the published position (positions ``1..published`` are then exactly the table's rows).
        Idempotent; safe to interrupt (an interrupted flush is recovered like any other)."""
        with self._write_lock():
            view = self._refresh()
            if view.tail.rows:
                self._write_segments(view, view.tail.frame.clear())
                view = self._refresh()
            return view.manifest.segments_head

    def flush_tail(self, view: LogView) -> None:
        """Move the write-ahead tail of ``view`` into segments (call under :meth:`write_lock`)."""
        if view.tail.rows:
            self._write_segments(view, view.tail.frame.clear())

    def commit_segments(
        self, old: Manifest, *, added: Sequence[SegmentInfo], removed: Sequence[str]
    ) -> Manifest:
        """Commit ``old`` with ``added`` segments and without ``removed`` ones, events unchanged
        (compaction; call under :meth:`write_lock`): one Delta commit that adds the new files and
        removes the replaced ones. Returns the committed state."""
        return self._store_manifest(old, added=added, removed=removed, tail=None)

    def append(
        self,
        events: Sequence[EventEnvelope] | pl.DataFrame | pa.Table,
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[int]:
        """Append a batch atomically and return each event's global position, in batch order.

        ``events`` is a sequence of envelopes or a columnar batch (see :meth:`append_frame`). With
        ``expected_versions`` (``{aggregate_id: version}``, 0 = the stream must not exist yet) every named
        stream must be at exactly that version or :class:`ConcurrencyError` is raised and nothing is
        written. Appending events whose ids are all already in the log with the same content is a no-op
        returning the original positions; an id already used with different content raises
        :class:`DuplicateEventError`."""
        return self.append_batch(events, expected_versions).positions

    def append_frame(
        self, frame: pl.DataFrame | pa.Table, expected_versions: Mapping[str, int] | None = None
    ) -> list[int]:
        """Columnar append: ``frame`` has the columns ``aggregate_id, aggregate_type, event_type, data``
        (JSON text), ``tenant_id, correlation_id`` and optionally ``event_id, event_version, user_id,
        causation_id, timestamp, metadata_extra``. Same guarantees as :meth:`append`."""
        return self.append_batch(frame, expected_versions).positions

    def append_batch(
        self,
        events: Sequence[EventEnvelope] | pl.DataFrame | pa.Table,
        expected_versions: Mapping[str, int] | None = None,
    ) -> AppendResult:
        """:meth:`append`, also telling whether the batch was an idempotent retry."""
        now = datetime.now(UTC)
        expected = {
            validate_uuid("expected_versions key", k): int(v) for k, v in (expected_versions or {}).items()
        }
        if isinstance(events, pl.DataFrame | pa.Table):
            frame = prepare_typed_frame(events, now=now)
        else:
            events = list(events)
            if not all(isinstance(e, EventEnvelope) for e in events):
                raise ValidationError("append takes EventEnvelope objects or a columnar batch")
            if len(events) < limits.BULK_ROWS:
                return self._append_small(events, expected, now)
            frame = prepare_frame(envelopes_to_frame(events), now=now)
        if frame.height == 0:
            if expected:
                with self._write_lock():
                    view = self._refresh()
                    self._check_expected(expected, self._current_versions(list(expected), view))
            return AppendResult([], duplicate=False)
        with self._write_lock():
            view = self._refresh()
            existing = self._find_existing(frame, view)
            if existing is not None:
                return existing
            # events per stream: the streams to look up, and their new versions after the commit
            per_stream = frame["aggregate_id"].value_counts()
            counts = dict(
                zip(per_stream.to_series(0).to_list(), per_stream.to_series(1).to_list(), strict=True)
            )
            current = self._current_versions(sorted(counts.keys() | expected.keys()), view)
            self._check_expected(expected, current)
            return self._commit(frame, current, counts, view, now)

    def _append_small(
        self, events: list[EventEnvelope], expected: dict[str, int], now: datetime
    ) -> AppendResult:
        """The path for a command's handful of events: plain Python, no DataFrame machinery, so a
        durable one-event commit costs a write-ahead append and little else."""
        for event in events:
            _check_envelope(event)
        ids = [e.id for e in events]
        if len(set(ids)) != len(ids):
            raise ValidationError(
                "an event id appears twice in one batch", hint="give every event its own id"
            )
        with self._write_lock():
            view = self._refresh()
            if self._maybe_stored(ids, view):
                existing = self._find_existing(prepare_frame(envelopes_to_frame(events), now=now), view)
                if existing is not None:
                    return existing
            streams = {e.aggregate_id for e in events} | set(expected)
            current = self._current_versions(sorted(streams), view)
            self._check_expected(expected, current)
            if not events:
                return AppendResult([], duplicate=False)
            head = view.head
            created_at = self._created_at(view, now)
            running = dict(current)
            versions = []
            for event in events:
                running[event.aggregate_id] = running.get(event.aggregate_id, 0) + 1
                versions.append(running[event.aggregate_id])
            columns: dict[str, list[Any]] = {
                "global_position": list(range(head + 1, head + 1 + len(events))),
                "aggregate_version": versions,
                "created_at": [created_at] * len(events),
                **envelope_columns(events),
            }
            table = pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)
            self._persist(view, table)
            self._versions.update({k: v for k, v in running.items() if k in streams})
            self._versions_at = head + len(events)
            return AppendResult(columns["global_position"], duplicate=False)

    @staticmethod
    def _created_at(view: LogView, now: datetime) -> datetime:
        """Commit time, never earlier than the previous commit's, so time travel by time is monotone."""
        last = _parse_ts(view.manifest.last_created_at)
        if view.tail.last_created_at is not None:
            last = view.tail.last_created_at
        return max(now, last) if last is not None else now

    def _persist(self, view: LogView, batch: pa.Table | pl.DataFrame) -> None:
        """Commit a positioned batch: to the write-ahead log, or with the tail into segments."""
        rows = batch.num_rows if isinstance(batch, pa.Table) else batch.height
        if rows >= limits.SEGMENT_ROWS or view.tail.rows + rows >= limits.WAL_FLUSH_ROWS:
            self._write_segments(view, batch if isinstance(batch, pl.DataFrame) else _frame(batch))
            return
        # the write-ahead log keeps the envelope columns; typed payload columns are derived at the flush
        if isinstance(batch, pa.Table):
            table, frame = batch, None
        else:
            frame = batch.select(COLUMNS)
            table = frame.to_arrow().cast(EVENT_SCHEMA)
        if view.torn_bytes:
            self._move_torn_record_aside(view)
        if view.wal_valid_bytes == 0 and not view.wal_path.exists():
            view.wal_path.touch()
            fsync_dir(self.wal_dir)
        valid = wal.append(view.wal_path, table, valid_bytes=view.wal_valid_bytes)
        # the payload columns a batch brought stay with the tail in memory, for its flush
        brought = brought_payload_columns(batch) if isinstance(batch, pl.DataFrame) else None
        view.tail.extend(table, frame, brought)
        head = view.head
        write_head(self.head_path, head, sync=False)  # only now is the commit acknowledged
        self._view = replace(
            view, wal_valid_bytes=valid, wal_stamp=wal.stamp(view.wal_path), recorded_head=head, torn_bytes=0
        )

    @staticmethod
    def _check_expected(expected: Mapping[str, int], current: Mapping[str, int]) -> None:
        for aggregate_id, version in expected.items():
            actual = current.get(aggregate_id, 0)
            if actual != version:
                raise ConcurrencyError(aggregate_id, version, actual)

    def _commit(
        self,
        frame: pl.DataFrame,
        current: dict[str, int],
        counts: Mapping[str, int],
        view: LogView,
        now: datetime,
    ) -> AppendResult:
        head = view.head
        created_at = self._created_at(view, now)
        stored = number_batch(frame, head=head, created_at=created_at, versions=current)
        self._persist(view, stored)
        for aggregate_id, events in counts.items():
            self._versions[aggregate_id] = current.get(aggregate_id, 0) + events
        self._versions_at = head + frame.height
        return AppendResult(list(range(head + 1, head + 1 + frame.height)), duplicate=False)

    def _write_segments(self, view: LogView, batch: pl.DataFrame) -> None:
        """Move the write-ahead tail plus ``batch`` into segments and commit them in one Delta commit.

        Order matters for crash safety: segment files, then their index rows, then the Delta commit (the
        commit point, carrying the log's state), then the recorded head, then the old write-ahead file.
        A crash before the commit leaves orphans that recovery moves to quarantine; after it, a stale
        write-ahead file likewise."""
        untyped = view.tail.chunked_frame() if view.tail.rows else None
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Events of many commits: each segment gets a copy clustered by stream (stream_copies.py),
            # written while the segments are typed and written; both enter the index in one
            # transaction. A copy holds the envelope columns only, so it starts before the typing.
            gathers = _gathers_commits(view.tail.rows, batch.height)
            copies = (
                pool.submit(write_copies, split(_joined(untyped, batch)), self.copies_dir, self.staging_dir)
                if gathers
                else None
            )
            # The tail's events are typed from their JSON here, once, unless their batch brought its
            # payload columns (kept with the tail, see _persist); a bulk batch is stored as it comes
            # (typed when it brings its payload columns, as a run's do).
            # A batch under SEGMENT_ROWS is here because it filled the tail: typed like the tail.
            if 0 < batch.height < limits.SEGMENT_ROWS:
                batch = with_payload_columns(batch)
            frame = _joined(_typed_tail(view.tail, untyped) if untyped is not None else None, batch)
            # a bulk batch with at most a row group's worth of tail: larger row groups (segments.py),
            # and files written two at a time (one Parquet encoder keeps one core busy)
            bulk = batch.height >= limits.SEGMENT_ROWS and not gathers
            chunks = split(frame, pieces=2 if bulk else 1)
            written = write_segments(
                frame,
                self.segments_dir,
                self.staging_dir,
                chunks,
                derive=self.roll_up,
                row_group_size=BULK_ROW_GROUP_SIZE if bulk else SEGMENT_ROW_GROUP_SIZE,
            )
            infos = [w.info for w in written]
            with self.index.writing() as con:
                self.index.add_segments(con, infos, [w.granules for w in written])
                if copies is not None:
                    self.index.add_stream_copies(con, index_rows(copies.result(), written))
        new = self._store_manifest(view.manifest, added=infos, removed=(), tail=frame)
        write_head(self.head_path, max(new.segments_head, new.lost_head))
        if view.wal_path.exists():
            view.wal_path.unlink()  # its events are in the committed segments now

    def _store_manifest(
        self,
        old: Manifest,
        *,
        added: Sequence[SegmentInfo],
        removed: Sequence[str],
        tail: pl.DataFrame | None,
    ) -> Manifest:
        removed_set = set(removed)
        segments = tuple(s for s in old.segments if s.path not in removed_set) + tuple(added)
        segments = tuple(sorted(segments, key=lambda s: (s.first_position, s.path)))
        head = max((s.last_position for s in segments), default=0)
        new = replace(old, generation=old.generation + 1, segments=segments, segments_head=head)
        if tail is not None and tail.height:
            frame = tail
            new = replace(
                new,
                wal_first_position=head + 1,
                last_created_at=frame["created_at"].max().isoformat(),  # type: ignore[union-attr]
                max_event_id=max(old.max_event_id, str(frame["event_id"].max())),
                max_aggregate_id=max(old.max_aggregate_id, str(frame["aggregate_id"].max())),
            )
        self._commit_state(new)
        return new


def _typed_tail(tail: Tail, untyped: pl.DataFrame) -> pl.DataFrame:
    """The tail's events (``untyped``: its envelope columns) with their typed payload columns: those
    their batches brought, the others typed from their JSON now."""
    made = tail.typed_columns()
    return with_payload_columns(untyped.hstack(made) if made is not None else untyped)


def _joined(tail: pl.DataFrame | None, batch: pl.DataFrame) -> pl.DataFrame:
    """The tail's events followed by ``batch`` (position order), as one frame to write."""
    if tail is None:
        return batch
    return pl.concat([tail, batch], how="diagonal_relaxed") if batch.height else tail


def _gathers_commits(tail_rows: int, batch_rows: int) -> bool:
    """Whether segments written from a tail of ``tail_rows`` plus a batch of ``batch_rows`` need stream
    copies. A flushed tail (many small commits spread over the file) does. A bulk batch that goes
    straight to segments with a tail shorter than one row group does not: the tail's streams sit in
    the file's first row group(s) of each date, the batch's where the batch put them, and a copy of
    the whole batch (sorting and writing every envelope column again, beside the segments, on the
    same two cores) doubled the cost of a run's append for nothing a stream load would notice."""
    if tail_rows == 0:
        return False
    return batch_rows < limits.SEGMENT_ROWS or tail_rows > SEGMENT_ROW_GROUP_SIZE


def _check_envelope(event: EventEnvelope) -> None:
    """Check the ids and names of an envelope again: ``model_construct`` and ``model_copy(update=...)``
    build envelopes without validation, and a bad id in the log would break every later flush."""
    meta = event.metadata
    for field, value in (
        ("id", event.id),
        ("aggregate_id", event.aggregate_id),
        ("metadata.tenant_id", meta.tenant_id),
        ("metadata.correlation_id", meta.correlation_id),
    ):
        validate_uuid(field, value)
    if meta.causation_id is not None:
        validate_uuid("metadata.causation_id", meta.causation_id)
    validate_name("aggregate_type", event.aggregate_type)
    validate_name("event_type", event.event_type)


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.cast(POLARS_SCHEMA)  # type: ignore[arg-type]


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
