"""The event store: an append-only log of Parquet segments plus a write-ahead tail, indexed by DuckDB.

Where truth lives (see ``docs/architecture.md``):

* the committed log is the segment files named in ``manifest.json`` followed by the committed records
  of the write-ahead log file it names; together they hold positions ``1..head`` with no gap;
* ``manifest.json`` is replaced atomically and is the commit point of every segment write;
  a complete, checksummed write-ahead record is the commit point of a small commit;
* the DuckDB index is derived: it always covers at least the committed segments (rows are added before
  the manifest that names their segment), is filtered by the manifest on read, and is rebuilt from the
  segments by ``reindex``.

Writers serialise on an exclusive ``flock`` (``write.lock``) only while they commit; positions and stream
versions are assigned under it, so global order is gap-free and equals commit order. Readers take no
write lock: they read one manifest and the write-ahead records present at that moment.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from settler_pipeline.domain.envelope import EventEnvelope, as_utc, validate_name
from settler_pipeline.domain.registry import EventRegistry, default_registry
from settler_pipeline.errors import (
    ConcurrencyError,
    CorruptionError,
    NotFoundError,
    StoreError,
    ValidationError,
)
from settler_pipeline.files import fsync_dir
from settler_pipeline.ids import validate_uuid
from settler_pipeline.store import manifest as manifest_io
from settler_pipeline.store import quarantine, wal
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.batch import number_batch, retried_positions, upcast_rows
from settler_pipeline.store.head import read_head, write_head
from settler_pipeline.store.index import EventIndex, granules, named_rows
from settler_pipeline.store.locks import DEFAULT_TIMEOUT_S, file_lock
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.named_ids import NamedIds, is_time_ordered
from settler_pipeline.store.named_ids import named as named_ids
from settler_pipeline.store.schema import (
    EVENT_SCHEMA,
    POLARS_SCHEMA,
    envelope_columns,
    envelopes_to_frame,
    frame_to_envelopes,
    prepare_frame,
)
from settler_pipeline.store.segments import (
    SegmentReader,
    describe_file,
    list_segment_files,
    row_group_starts,
    verify_file,
    verify_files,
    write_segments,
)
from settler_pipeline.store.snapshots import Snapshot, SnapshotStore
from settler_pipeline.store.tail import Tail

_log = logging.getLogger(__name__)
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
PROJECTION_COLUMNS = (
    "global_position",
    "aggregate_id",
    "aggregate_version",
    "event_type",
    "event_version",
    "tenant_id",
    "timestamp",
    "created_at",
)
"""The envelope columns :meth:`EventStore.read_fields` returns unless told otherwise."""
PUBLISH_EVERY_EVENTS = 50_000  # publish on its own once this many committed events are unpublished
GRANULE_CACHE_LIMIT = 1_000_000  # stream granules held in memory per store instance (~100 bytes each)
WAL_FLUSH_ROWS = 20_000  # move the write-ahead tail into a segment once it holds this many events
BULK_ROWS = 2_000  # batches at least this big go straight to segments


@dataclass(frozen=True)
class LogView:
    """One consistent view of the committed log: a manifest and the write-ahead records after it,
    with any damage found on the way (see :func:`find_damage`)."""

    manifest: Manifest
    wal_path: Path
    wal_valid_bytes: int
    tail: Tail  # committed write-ahead events, in position order
    wal_stamp: tuple[int, int] = (0, -1)  # (inode, size) of the write-ahead file when read
    recorded_head: int | None = None  # the head recorded by the last acknowledged commit
    damage: tuple[str, ...] = ()  # what is damaged and what was lost; empty for a sound log
    torn_bytes: int = 0  # unreadable bytes after the last intact record that no commit acknowledged

    @property
    def head(self) -> int:
        held = self.tail.last_position if self.tail.last_position is not None else self.manifest.segments_head
        return max(held, self.manifest.lost_head)

    def check(self) -> None:
        """Raise :class:`CorruptionError` describing the damage, if any."""
        if self.damage:
            more = f" (and {len(self.damage) - 1} more problem(s))" if len(self.damage) > 1 else ""
            raise CorruptionError(
                f"the event log is damaged: {self.damage[0]}{more}",
                hint="`settler log verify` lists the damage; `settler log repair` keeps every intact "
                "event and records what was lost",
            )

    @property
    def live_paths(self) -> frozenset[str]:
        return frozenset(seg.path for seg in self.manifest.segments)


@dataclass(frozen=True)
class AppendResult:
    """Positions assigned to an appended batch, in the batch's order."""

    positions: list[int]
    duplicate: bool  # True when the whole batch was already in the log (an idempotent retry)


class EventStore:
    """The append-only event log of one data directory. Open it with :meth:`open`.

    Safe for several processes at once; one instance is not meant to be shared between threads."""

    def __init__(
        self, data_dir: Path, *, registry: EventRegistry, lock_timeout_s: float, read_only: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "log"
        self.segments_dir = self.root / "segments"
        self.staging_dir = self.root / ".staging"
        self.wal_dir = self.root / "wal"
        self.retired_dir = self.root / "retired"
        self.manifest_path = self.root / "manifest.json"
        self.head_path = self.root / "head"
        self.write_lock_path = self.root / "write.lock"
        self.registry = registry
        self.lock_timeout_s = lock_timeout_s
        self.read_only = read_only
        self.index = EventIndex(self.root / "index.duckdb", read_only=read_only)
        self.snapshots = SnapshotStore(self.root / "snapshots.duckdb", read_only=read_only)
        self._reader = SegmentReader(self.segments_dir)
        self._view: LogView | None = None
        # the last manifest read and the (inode, mtime, size) of the file it was read from
        self._manifest_cache: tuple[tuple[int, int, int], Manifest] | None = None
        self._versions: dict[str, int] = {}
        self._granules: dict[str, list[tuple[str, int, str, int, int]]] | None = {}
        self._granules_for: frozenset[str] = frozenset()
        self._named = NamedIds(self.index)
        self._versions_at = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        registry: EventRegistry | None = None,
        lock_timeout_s: float = DEFAULT_TIMEOUT_S,
        recover_index: bool = True,
        read_only: bool = False,
    ) -> EventStore:
        """Open the log under ``data_dir``.

        A writer (the default) creates the log if needed and recovers from any interrupted write:
        leftovers of interrupted writes and files the commit point does not name are moved to a
        quarantine folder (never deleted), a torn write-ahead record that no commit acknowledged is
        moved aside and cut off, and the index is brought in line with the manifest. A damaged log is
        left exactly as found: reads and appends then raise :class:`CorruptionError`.

        ``read_only=True`` takes no lock, recovers nothing and writes nothing (it works on a read-only
        copy and beside writers); a directory without a Settler log raises :class:`NotFoundError`.
        ``recover_index=False`` skips the index step and leaves a missing or unreadable manifest alone
        (for ``reindex``, which rebuilds both from the segments)."""
        path = Path(data_dir)
        if path.exists() and not path.is_dir():
            raise ValidationError(f"data directory {path} is a file", hint="pass a directory path")
        store = cls(
            path, registry=registry or default_registry, lock_timeout_s=lock_timeout_s, read_only=read_only
        )
        if read_only:
            if not store.root.is_dir():
                raise NotFoundError(
                    f"no Settler data at {path}", hint="pass --data-dir or set SETTLER_DATA_DIR"
                )
            if not store.manifest_path.exists() and list_segment_files(store.segments_dir):
                raise StoreError(
                    f"{store.manifest_path} is missing but segments exist",
                    hint="run `settler log reindex` to rebuild it from the segments",
                )
            return store
        for directory in (store.root, store.segments_dir, store.staging_dir, store.wal_dir):
            directory.mkdir(parents=True, exist_ok=True)
        with store._write_lock():
            store._recover(recover_index=recover_index)
        return store

    def close(self) -> None:
        """Release cached file handles and connections."""
        self._reader.close()
        self.index.close()
        self.snapshots.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_lock(self) -> Any:
        """The writers' lock (a context manager): hold it to change the log's files."""
        return self._write_lock()

    def _write_lock(self) -> Any:
        if self.read_only:
            raise StoreError(
                f"the event log at {self.data_dir} was opened read-only",
                hint="open it without read_only=True to write",
            )
        return file_lock(self.write_lock_path, timeout_s=self.lock_timeout_s)

    # -- views ---------------------------------------------------------------------------------------

    def _load_manifest(self) -> Manifest:
        try:
            st = os.stat(self.manifest_path)
        except FileNotFoundError:
            return Manifest()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._manifest_cache is not None and self._manifest_cache[0] == stamp:
            return self._manifest_cache[1]
        loaded = manifest_io.load(self.manifest_path) or Manifest()
        self._manifest_cache = (stamp, loaded)
        return loaded

    def _refresh(self) -> LogView:
        """The current committed log (cheap when nothing changed: a stat and an incremental read);
        raises :class:`CorruptionError` when the log is damaged."""
        view = self.current_view()
        view.check()
        return view

    def current_view(self) -> LogView:
        """The current committed log, damaged or not (``view.damage`` says what is wrong)."""
        for _ in range(50):
            previous = self._view
            manifest = self._load_manifest()
            wal_path = self.wal_dir / wal.wal_name(manifest.wal_first_position)
            stamp = wal.stamp(wal_path)
            if (
                previous is not None
                and previous.manifest.generation == manifest.generation
                and previous.wal_path == wal_path
                and previous.wal_stamp[0] == stamp[0]
                and stamp[1] >= previous.wal_valid_bytes + previous.torn_bytes
            ):
                if stamp == previous.wal_stamp:
                    return previous  # nothing appended since: a stat instead of an open and read
                # Read the recorded head before the records: every head we see is then covered by them.
                recorded = self._recorded_head()
                more = wal.read(wal_path, start=previous.wal_valid_bytes, after_position=previous.head)
                if more.mid_file_damage:
                    self._view = None
                    continue  # damage past our last read: describe it from a full read
                for batch in more.batches:
                    previous.tail.extend(batch)
                view = _with_damage(
                    LogView(manifest, wal_path, more.valid_bytes, previous.tail, stamp), more, recorded
                )
            else:
                recorded = self._recorded_head()
                manifest = self._load_manifest()
                wal_path = self.wal_dir / wal.wal_name(manifest.wal_first_position)
                stamp = wal.stamp(wal_path)
                contents = wal.read(wal_path, after_position=manifest.wal_first_position - 1)
                if not wal_path.exists() and self._load_manifest().generation != manifest.generation:
                    continue  # the tail was flushed into segments between our two reads: look again
                tail = Tail()
                for batch in contents.batches:
                    tail.extend(batch)
                view = _with_damage(
                    LogView(manifest, wal_path, contents.valid_bytes, tail, stamp), contents, recorded
                )
            self._view = view
            return view
        raise StoreError("the log kept changing while being read", hint="retry the read")

    def _recorded_head(self) -> int | CorruptionError | None:
        try:
            return read_head(self.head_path)
        except CorruptionError as exc:
            return exc

    # -- publishing ----------------------------------------------------------------------------------

    @property
    def table_uri(self) -> str:
        """Where the published log (a Delta Lake table) lives; see :mod:`settler_pipeline.store.table`."""
        return delta_table.table_uri(self.segments_dir)

    def publish(self) -> int:
        """Publish every committed event into the Delta table: the write-ahead tail is moved into
        segments and the table's files are made exactly the manifest's, in one Delta commit. Returns
        the published position (positions ``1..published`` are then exactly the table's rows).
        Idempotent; safe to interrupt (the next call completes it)."""
        with self._write_lock():
            view = self._refresh()
            if view.tail.rows:
                self._write_segments(view, view.tail.frame.clear())
                view = self._refresh()
            return self.publish_segments(view.manifest)

    def publish_segments(self, manifest: Manifest) -> int:
        """Make the table hold exactly ``manifest``'s segments and record what is published (call it
        under :meth:`write_lock` with the manifest just stored; :meth:`publish` is the usual entry)."""
        head = manifest.segments_head
        delta_table.sync(self.segments_dir, manifest.segments, head, manifest.published_head)
        if manifest.published_head != head:
            manifest_io.store(self.manifest_path, replace(manifest, published_head=head))
            self._view = None
        return head

    def forget_view(self) -> None:
        """Drop the cached view: the next read looks at the files afresh (after maintenance)."""
        self._view = None

    @property
    def head_position(self) -> int:
        """The global position of the newest committed event (0 for an empty log)."""
        return self._refresh().head

    # -- appending -----------------------------------------------------------------------------------

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
            frame = prepare_frame(events, now=now)
        else:
            events = list(events)
            if not all(isinstance(e, EventEnvelope) for e in events):
                raise ValidationError("append takes EventEnvelope objects or a columnar batch")
            if len(events) < BULK_ROWS:
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
            streams = frame["aggregate_id"].unique().to_list()
            current = self._current_versions(sorted(set(streams) | set(expected)), view)
            self._check_expected(expected, current)
            return self._commit(frame, current, view, now)

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
        if rows >= BULK_ROWS or view.tail.rows + rows >= WAL_FLUSH_ROWS:
            self._write_segments(view, batch if isinstance(batch, pl.DataFrame) else _frame(batch))
            return
        table = batch if isinstance(batch, pa.Table) else batch.to_arrow().cast(EVENT_SCHEMA)
        if view.torn_bytes:
            self._move_torn_record_aside(view)
        if view.wal_valid_bytes == 0 and not view.wal_path.exists():
            view.wal_path.touch()
            fsync_dir(self.wal_dir)
        valid = wal.append(view.wal_path, table, valid_bytes=view.wal_valid_bytes)
        view.tail.extend(table)
        head = view.head
        write_head(self.head_path, head)  # only now is the commit acknowledged
        self._view = replace(
            view, wal_valid_bytes=valid, wal_stamp=wal.stamp(view.wal_path), recorded_head=head, torn_bytes=0
        )

    def _move_torn_record_aside(self, view: LogView) -> None:
        """Keep the unreadable bytes after the last intact write-ahead record (a write that was never
        acknowledged) in the quarantine folder; the next append writes over them."""
        with open(view.wal_path, "rb") as handle:
            handle.seek(view.wal_valid_bytes)
            torn = handle.read()
        kept = quarantine.save_bytes(self.root, f"{view.wal_path.name}.torn-at-{view.wal_valid_bytes}", torn)
        _log.info("moved a torn write-ahead record (%d bytes) to %s", len(torn), kept)

    @staticmethod
    def _check_expected(expected: Mapping[str, int], current: Mapping[str, int]) -> None:
        for aggregate_id, version in expected.items():
            actual = current.get(aggregate_id, 0)
            if actual != version:
                raise ConcurrencyError(aggregate_id, version, actual)

    def _commit(
        self, frame: pl.DataFrame, current: dict[str, int], view: LogView, now: datetime
    ) -> AppendResult:
        head = view.head
        created_at = self._created_at(view, now)
        stored = number_batch(frame, head=head, created_at=created_at, versions=current)
        self._persist(view, stored)
        latest = stored.group_by("aggregate_id").agg(pl.col("aggregate_version").max())
        for aggregate_id, version in latest.iter_rows():
            self._versions[aggregate_id] = version
        self._versions_at = head + frame.height
        return AppendResult(stored["global_position"].to_list(), duplicate=False)

    def _write_segments(self, view: LogView, batch: pl.DataFrame) -> None:
        """Move the write-ahead tail plus ``batch`` into segments and commit them with a new manifest.

        Order matters for crash safety: segment files, then their index rows, then the manifest (the
        commit point), then the recorded head, then the old write-ahead file. A crash before the manifest
        leaves orphans that recovery moves to quarantine; after it, a stale write-ahead file likewise."""
        frame = pl.concat([view.tail.frame, batch]) if view.tail.rows else batch
        written = write_segments(frame, self.segments_dir, self.staging_dir)
        infos = [w.info for w in written]
        rows = [w.granules for w in written]
        with self.index.writing() as con:
            self.index.add_segments(con, infos, rows)
        new = self._store_manifest(view.manifest, added=infos, removed=(), tail=frame)
        write_head(self.head_path, max(new.segments_head, new.lost_head))
        if view.wal_path.exists():
            view.wal_path.unlink()  # its events are in the committed segments now
        if new.segments_head - new.published_head >= PUBLISH_EVERY_EVENTS:
            self.publish_segments(new)

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
        manifest_io.store(self.manifest_path, new)
        self._view = None
        return new

    def _maybe_stored(self, ids: list[str], view: LogView) -> bool:
        """Whether any of ``ids`` may be in the log: exact for the tail and for ids that are not
        time-ordered; for time-ordered ids, true only when not newer than the log's greatest."""
        max_id = view.manifest.max_event_id
        named = [i for i in ids if not is_time_ordered(i)]
        return any(
            i in view.tail.ids or (is_time_ordered(i) and max_id and i <= max_id) for i in ids
        ) or bool(named and self._named.locate(named, view.live_paths))

    def _find_existing(self, frame: pl.DataFrame, view: LogView) -> AppendResult | None:
        """Handle idempotent retries: ``None`` when no event id of the batch is in the log yet."""
        ids = frame["event_id"]
        found: list[pl.DataFrame] = []
        if view.tail.rows:
            hit = view.tail.frame.filter(pl.col("event_id").is_in(ids.implode()))
            if hit.height:
                found.append(hit)
        others = named_ids(ids)
        if others.len():
            # exact: the index names the row group of every id that is not time-ordered
            hits = self._read_granules(
                lambda v: self._named.locate(others.to_list(), v.live_paths),
                [],
                pl.col("event_id").is_in(others.implode()),
                view,
            )
            if hits.height:
                found.append(hits)
        max_id = view.manifest.max_event_id
        ordered = ids.filter(ids.str.slice(14, 1) == "7")
        maybe_old = ordered.filter(ordered <= max_id) if max_id else ordered.clear()
        if maybe_old.len():
            # Row groups whose id range overlaps the batch's (time-ordered ids keep this to a few).
            hits = self._read_granules(
                "SELECT segment_path, row_group FROM idx.row_groups "
                "WHERE max_event_id >= $1::UUID AND min_event_id <= $2::UUID",
                [maybe_old.min(), maybe_old.max()],
                pl.col("event_id").is_in(maybe_old.implode()),
                view,
            )
            if hits.height:
                found.append(hits)
        if not found:
            return None
        return AppendResult(retried_positions(frame, pl.concat(found)), duplicate=True)

    def _current_versions(self, streams: Sequence[str], view: LogView) -> dict[str, int]:
        """Current version of each stream (0 if new), as of ``view``; cached between commits."""
        self._catch_up_versions(view)
        result: dict[str, int] = {}
        unknown: list[str] = []
        for aggregate_id in streams:
            if aggregate_id in self._versions:
                result[aggregate_id] = self._versions[aggregate_id]
            elif view.manifest.max_aggregate_id and aggregate_id <= view.manifest.max_aggregate_id:
                unknown.append(aggregate_id)
            else:
                result[aggregate_id] = self._tail_version(view, aggregate_id)
        if unknown:
            rows = self.index.query(
                "SELECT aggregate_id::VARCHAR, segment_path, max(max_version) FROM idx.stream_granules "
                "WHERE aggregate_id IN (SELECT unnest($1::UUID[])) GROUP BY 1, 2",
                [unknown],
            )
            live = view.live_paths
            from_index: dict[str, int] = {}
            for aggregate_id, path, version in rows:
                if path in live:
                    from_index[aggregate_id] = max(from_index.get(aggregate_id, 0), int(version))
            for aggregate_id in unknown:
                result[aggregate_id] = max(
                    from_index.get(aggregate_id, 0), self._tail_version(view, aggregate_id)
                )
        self._versions.update(result)
        return result

    @staticmethod
    def _tail_version(view: LogView, aggregate_id: str) -> int:
        return view.tail.versions.get(aggregate_id, 0)

    def _catch_up_versions(self, view: LogView) -> None:
        """Apply other writers' commits since our cached versions were taken."""
        if self._versions_at == view.head:
            return
        if not self._versions:  # nothing cached yet: nothing to bring up to date (no log scan)
            self._versions_at = view.head
            return
        if self._versions_at > view.head:  # the log was rebuilt under us: start over
            self._versions.clear()
        else:
            since = self._versions_at
            newer = [s for s in view.manifest.segments if s.last_position > since]
            verify_files([self.segments_dir / s.path for s in newer])
            parts = [
                pl.scan_parquet(self.segments_dir / s.path)
                .select("global_position", "aggregate_id", "aggregate_version")
                .filter(pl.col("global_position") > since)
                .collect()
                for s in newer
            ]
            parts.append(
                view.tail.frame.select("global_position", "aggregate_id", "aggregate_version").filter(
                    pl.col("global_position") > since
                )
            )
            changed = pl.concat(parts).group_by("aggregate_id").agg(pl.col("aggregate_version").max())
            for aggregate_id, version in changed.iter_rows():
                if aggregate_id in self._versions:
                    self._versions[aggregate_id] = max(self._versions[aggregate_id], version)
        self._versions_at = view.head

    # -- reading -------------------------------------------------------------------------------------

    def _read_granules(
        self,
        sql: str | Callable[[LogView], list[tuple[str, int]]],
        params: list[Any],
        row_filter: pl.Expr,
        view: LogView | None = None,
        *,
        with_tail: bool = False,
    ) -> pl.DataFrame:
        """Rows of the row groups an index query names (``segment_path, row_group``), keeping those
        that match ``row_filter``; in position order. Only segments of the view's manifest are read,
        and the read is retried with a fresh view if a flush or compaction replaced the manifest
        meanwhile (the index may then lack the view's segments, or the view's tail may have moved
        into segments). With ``with_tail`` the matching write-ahead events of the same view are added."""
        for _ in range(20):
            current = view or self._refresh()
            found = sql(current) if callable(sql) else self.index.query(sql, params)
            live = current.live_paths
            groups: dict[str, set[int]] = {}
            for path, row_group in found:
                if path in live:
                    groups.setdefault(path, set()).add(int(row_group))
            try:
                parts = [
                    self._reader.read_groups(path, sorted(gs)).filter(row_filter)
                    for path, gs in sorted(groups.items())
                ]
            except FileNotFoundError:
                view, self._view = None, None
                continue
            if self._load_manifest().generation != current.manifest.generation:
                view, self._view = None, None
                continue
            if with_tail and current.tail.rows:
                parts.append(current.tail.frame.filter(row_filter))
            if not parts:
                return pl.DataFrame(schema=POLARS_SCHEMA)
            return pl.concat(parts).sort("global_position")
        raise StoreError("the log kept being compacted while being read", hint="retry the read")

    def _locate(self, sql: str, params: list[Any], row_filter: pl.Expr) -> pl.DataFrame:
        """Committed events matching ``row_filter`` from the granules ``sql`` names plus the tail."""
        return self._read_granules(sql, params, row_filter, with_tail=True)

    def _envelopes(self, rows: pl.DataFrame) -> list[EventEnvelope]:
        return [self.registry.upcast(event) for event in frame_to_envelopes(rows)]

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
        """The events of one stream in version order, upcast to current versions; optionally only
        ``from_version..to_version`` (inclusive) and only as the log stood at a position or time."""
        aggregate_id = validate_uuid("aggregate_id", aggregate_id)
        limit = self._as_of_limit(as_of_position, as_of)
        low, high = from_version or 1, to_version if to_version is not None else 2**62
        rows = self._stream_rows(aggregate_id, aggregate_type, low, high)
        if limit is not None:
            rows = rows.filter(pl.col("global_position") <= limit)
        return self._envelopes(rows.sort("aggregate_version"))

    def _stream_rows(self, aggregate_id: str, aggregate_type: str, low: int, high: int) -> pl.DataFrame:
        """A stream's stored rows with versions ``low..high`` (segments and tail), in position order."""

        def granules_of(view: LogView) -> list[tuple[str, int]]:
            cache = self._granule_cache(view)
            if cache is None:
                return self.index.query(
                    "SELECT segment_path, row_group FROM idx.stream_granules WHERE aggregate_id = $1::UUID "
                    "AND aggregate_type = $2 AND max_version >= $3 AND min_version <= $4",
                    [aggregate_id, aggregate_type, low, high],
                )
            return [
                (path, row_group)
                for path, row_group, kind, first, last in cache.get(aggregate_id, ())
                if kind == aggregate_type and last >= low and first <= high
            ]

        return self._read_granules(
            granules_of,
            [],
            (pl.col("aggregate_id") == aggregate_id)
            & (pl.col("aggregate_type") == aggregate_type)
            & pl.col("aggregate_version").is_between(low, high),
            with_tail=True,
        )

    def _granule_cache(self, view: LogView) -> dict[str, list[tuple[str, int, str, int, int]]] | None:
        """Stream → granules of the view's segments, kept in memory and extended by the granules of new
        segments only (a point read then needs no index round trip, ~2 ms). ``None`` when the log has
        too many granules to hold (reads then ask the index)."""
        live = view.live_paths
        if self._granules_for == live:
            return self._granules
        if self._granules is None and self._granules_for:  # over the limit before: stay on the index
            return None
        cache = dict(self._granules or {})
        gone = self._granules_for - live
        if gone:
            cache = {k: [g for g in v if g[0] not in gone] for k, v in cache.items()}
        missing = sorted(live - self._granules_for)
        if missing:
            rows = self.index.query(
                "SELECT aggregate_id::VARCHAR, segment_path, row_group, aggregate_type, min_version, "
                "max_version FROM idx.stream_granules WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
                [missing],
            )
            for aggregate_id, path, row_group, kind, first, last in rows:
                cache.setdefault(aggregate_id, []).append((path, int(row_group), kind, int(first), int(last)))
        self._granules_for = live
        if sum(len(v) for v in cache.values()) > GRANULE_CACHE_LIMIT:
            self._granules = None
            return None
        self._granules = cache
        return cache

    def stream_frame(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        *,
        as_of_position: int | None = None,
    ) -> pl.DataFrame:
        """A stream's events as a Polars frame in version order (stored columns, ``data`` as JSON text),
        upcast to current versions: the bulk counterpart of :meth:`get_events` for folding big streams."""
        aggregate_id = validate_uuid("aggregate_id", aggregate_id)
        low = from_version or 1
        rows = self._stream_rows(aggregate_id, aggregate_type, low, 2**62)
        if as_of_position is not None:
            rows = rows.filter(pl.col("global_position") <= as_of_position)
        return self._upcast_frame(rows.sort("aggregate_version"))

    def _upcast_frame(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Upcast the rows whose event type has a newer registered version (others untouched)."""
        return upcast_rows(rows, self.registry)

    def get_event(self, event_id: str) -> EventEnvelope | None:
        """The event with this id (upcast), or ``None`` if it is not in the log."""
        event_id = validate_uuid("event_id", event_id)
        view = self._refresh()
        rows = self._rows_by_ids([event_id], view)
        return self._envelopes(rows)[0] if rows.height else None

    def event_position(self, event_id: str) -> int | None:
        """The position of the event with this id, or ``None`` if it is not in the log."""
        event_id = validate_uuid("event_id", event_id)
        view = self._refresh()
        if event_id in view.tail.ids:
            return view.tail.ids[event_id]
        if not view.manifest.max_event_id or event_id > view.manifest.max_event_id:
            return None
        rows = self._rows_by_ids([event_id], view)
        return int(rows["global_position"][0]) if rows.height else None

    def get_events_by_correlation_id(
        self, correlation_id: str, *, as_of_position: int | None = None
    ) -> list[EventEnvelope]:
        """Every event of one flow (same correlation id), in log order."""
        return self._envelopes(self.correlation_frame(correlation_id, as_of_position=as_of_position))

    def correlation_frame(self, correlation_id: str, *, as_of_position: int | None = None) -> pl.DataFrame:
        """One flow's events as a Polars frame in log order (stored columns, not upcast)."""
        correlation_id = validate_uuid("correlation_id", correlation_id)
        rows = self._locate(
            "SELECT segment_path, row_group FROM idx.correlation_granules WHERE correlation_id = $1::UUID",
            [correlation_id],
            pl.col("correlation_id") == correlation_id,
        )
        if as_of_position is not None:
            rows = rows.filter(pl.col("global_position") <= as_of_position)
        return rows

    def get_causation_chain(self, event_id: str) -> list[EventEnvelope]:
        """The event, the events that caused it (following ``causation_id`` up to the first cause that
        is not an event, e.g. a command) and every event it caused, transitively; in log order."""
        event_id = validate_uuid("event_id", event_id)
        view = self._refresh()
        chain: set[str] = set()
        frontier = [event_id]
        while frontier:  # upwards: the event and its causes, one index query per generation
            found = self._links("event_id", frontier, view)
            if not chain and not found:
                return []
            chain.update(e for e, _ in found)
            frontier = sorted({c for _, c in found if c is not None and c not in chain})
        frontier = [event_id]
        while frontier:  # downwards: everything it caused
            found = self._links("causation_id", frontier, view)
            frontier = sorted({e for e, _ in found if e not in chain})
            chain.update(frontier)
        ids = sorted(chain)
        return self._envelopes(self._rows_by_ids(ids, view))

    def _rows_by_ids(self, ids: list[str], view: LogView) -> pl.DataFrame:
        """Committed events with the given ids (row groups found by the exact index for ids that are not
        time-ordered, by their id ranges for the others)."""
        wanted = pl.col("event_id").is_in(pl.Series(ids, dtype=pl.String).implode())
        ordered = [i for i in ids if is_time_ordered(i)]
        others = [i for i in ids if not is_time_ordered(i)]

        def where(current: LogView) -> list[tuple[str, int]]:
            spots = self._named.locate(others, current.live_paths)
            if ordered:
                spots += self.index.query(
                    "SELECT DISTINCT g.segment_path, g.row_group FROM idx.row_groups g "
                    "JOIN (SELECT unnest($1::UUID[]) AS id) q "
                    "ON q.id BETWEEN g.min_event_id AND g.max_event_id",
                    [ordered],
                )
            return spots

        return self._read_granules(where, [], wanted, view, with_tail=True)

    def _links(self, column: str, ids: list[str], view: LogView) -> list[tuple[str, str | None]]:
        """(event_id, causation_id) of the events whose ``column`` ("event_id" or "causation_id") is
        one of ``ids``."""
        if column == "event_id":
            rows = self._rows_by_ids(ids, view)
        else:
            wanted = pl.col("causation_id").is_in(pl.Series(ids, dtype=pl.String).implode())
            rows = self._read_granules(
                "SELECT segment_path, row_group FROM idx.causation_granules "
                "WHERE causation_id IN (SELECT unnest($1::UUID[]))",
                [ids],
                wanted,
                view,
                with_tail=True,
            )
        return list(rows.select("event_id", "causation_id").iter_rows())

    def read(
        self,
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        *,
        as_of: datetime | None = None,
    ) -> pl.LazyFrame:
        """The log (positions ``> from_position`` and ``<= to_position``) as a Polars LazyFrame in
        position order with the stored columns (``data`` as JSON text, ``event_version`` as stored).

        The frame reads a fixed set of files; collect it promptly (a later ``compact`` retires files)."""
        view = self._refresh()
        limit = self._as_of_limit(to_position, as_of)
        upper = view.head if limit is None else min(limit, view.head)
        chosen = [
            s for s in view.manifest.segments if s.last_position > from_position and s.first_position <= upper
        ]
        paths = [self.segments_dir / s.path for s in chosen]
        verify_files(paths)
        parts: list[pl.LazyFrame] = []
        if paths:
            parts.append(pl.scan_parquet(paths, hive_partitioning=False))
        if view.tail.rows:
            parts.append(view.tail.frame.lazy())
        if not parts:
            return pl.LazyFrame(schema=POLARS_SCHEMA)
        frame = pl.concat(parts, how="vertical")
        first = min((seg.first_position for seg in chosen), default=view.manifest.segments_head + 1)
        if first <= from_position or upper < view.head:
            frame = frame.filter(pl.col("global_position").is_between(from_position + 1, upper))
        if event_types is not None:
            frame = frame.filter(pl.col("event_type").is_in(list(event_types)))
        if tenant_id is not None:
            frame = frame.filter(pl.col("tenant_id") == validate_uuid("tenant_id", tenant_id))
        # Segments list in position order; when their ranges do not interleave (a batch spanning
        # several event dates makes them interleave) the scan is already in log order and sorting a
        # wide frame would cost more than reading it.
        in_order = all(a.last_position < b.first_position for a, b in itertools.pairwise(chosen))
        return frame if in_order else frame.sort("global_position")

    def read_fields(
        self,
        fields: Mapping[str, pl.DataType | type[pl.DataType]],
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        columns: Sequence[str] = PROJECTION_COLUMNS,
    ) -> pl.DataFrame:
        """The log like :meth:`read`, but with chosen top-level ``data`` fields as typed columns
        instead of the JSON text: the fast path for projections (DuckDB extracts the fields while it
        scans the segments, which is several times faster than decoding JSON in Polars). A missing
        field is null; nested values come back as JSON text. ``columns`` picks the envelope columns
        (fewer columns read faster)."""
        for name in fields:
            if not _FIELD_RE.match(name) or name in POLARS_SCHEMA:
                raise ValidationError(
                    f"cannot read data field {name!r}",
                    hint="field names are lower-case identifiers that are not envelope columns",
                )
        view = self._refresh()
        upper = view.head if to_position is None else min(to_position, view.head)
        paths = [
            str(self.segments_dir / s.path)
            for s in view.manifest.segments
            if s.last_position > from_position and s.first_position <= upper
        ]
        unknown = [c for c in columns if c not in POLARS_SCHEMA]
        if unknown:
            raise ValidationError(f"unknown envelope column(s) {', '.join(unknown)}")
        base = list(dict.fromkeys(["global_position", *columns]))
        verify_files([Path(p) for p in paths])
        # $1 from, $2 to, $3 event types (or NULL), $4.. JSON paths, then the file list. Field names are
        # validated identifiers (above); every value is a bound parameter.
        extract = "".join(f", json_extract_string(data, ${i + 4}) AS {name}" for i, name in enumerate(fields))
        files_param = f"${len(fields) + 4}"
        params: list[Any] = [
            from_position,
            upper,
            list(event_types) if event_types is not None else None,
            *(f"$.{name}" for name in fields),
        ]
        where = (
            " WHERE global_position > $1 AND global_position <= $2"
            " AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], event_type))"
        )
        select = f"SELECT {', '.join(base)}{extract} FROM "  # noqa: S608
        parts: list[pl.DataFrame] = []
        con = duckdb.connect()
        try:
            if paths:
                query = select + f"read_parquet({files_param}::VARCHAR[])" + where
                parts.append(con.sql(query, params=[*params, paths]).pl())
            if view.tail.rows:
                con.register("tail_events", view.tail.frame)
                parts.append(con.sql(select + "tail_events" + where, params=params).pl())
        finally:
            con.close()
        frame = pl.concat(parts) if parts else pl.DataFrame(schema={c: POLARS_SCHEMA[c] for c in base})
        frame = frame.with_columns(pl.col(name).cast(dtype, strict=False) for name, dtype in fields.items())
        if tenant_id is not None:
            frame = frame.filter(pl.col("tenant_id") == validate_uuid("tenant_id", tenant_id))
        return frame.sort("global_position")

    def position_at(self, when: datetime) -> int:
        """The newest position committed at or before ``when`` (0 if none): the log "as of" a time."""
        when = as_utc(when)
        for _ in range(20):
            view = self._refresh()
            first = view.tail.first_created_at
            if first is not None and first <= when:
                newest = view.tail.frame.filter(pl.col("created_at") <= when)["global_position"].max()
                return int(newest)  # type: ignore[arg-type]
            best = self._position_in_segments(when, view)
            # a flush or compaction meanwhile may have taken the view's segments out of the index
            if best is not None and self._load_manifest().generation == view.manifest.generation:
                return best
            self._view = None
        raise StoreError("the log kept being compacted while being read", hint="retry the read")

    def _position_in_segments(self, when: datetime, view: LogView) -> int | None:
        """``position_at`` over the view's segments; ``None`` if a segment was retired meanwhile."""
        found = self.index.query(
            "SELECT segment_path, row_group, max_position, max_created_at <= $1 FROM idx.row_groups "
            "WHERE min_created_at <= $1",
            [when],
        )
        live = view.live_paths
        best = 0
        straddling: dict[str, list[int]] = {}
        for path, row_group, max_position, whole in found:
            if path not in live:
                continue
            if whole:
                best = max(best, int(max_position))
            else:
                straddling.setdefault(path, []).append(int(row_group))
        for path, groups in straddling.items():
            try:
                part = self._reader.read_groups(
                    path, sorted(groups), columns=["global_position", "created_at"]
                )
            except FileNotFoundError:
                return None
            newest = part.filter(pl.col("created_at") <= when)["global_position"].max()
            if newest is not None:
                best = max(best, int(newest))  # type: ignore[arg-type]
        return best

    def _as_of_limit(self, position: int | None, when: datetime | None) -> int | None:
        limits = [
            p for p in (position, self.position_at(when) if when is not None else None) if p is not None
        ]
        return min(limits) if limits else None

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
        """Store a snapshot of a stream's state after ``aggregate_version`` under ``schema_version``."""
        self.snapshots.save(
            Snapshot(
                aggregate_id=validate_uuid("aggregate_id", aggregate_id),
                aggregate_type=aggregate_type,
                aggregate_version=aggregate_version,
                schema_version=schema_version,
                global_position=global_position or 0,
                state=dict(state),
                created_at=datetime.now(UTC),
            )
        )

    def get_latest_snapshot(
        self, aggregate_id: str, aggregate_type: str, *, schema_version: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot of a stream (only of ``schema_version`` when given), or ``None``."""
        return self.snapshots.latest(
            validate_uuid("aggregate_id", aggregate_id), aggregate_type, schema_version
        )

    def get_events_after_snapshot(
        self, aggregate_id: str, aggregate_type: str, snapshot_version: int
    ) -> list[EventEnvelope]:
        """The stream's events after version ``snapshot_version``."""
        return self.get_events(aggregate_id, aggregate_type, from_version=snapshot_version + 1)

    # -- recovery ------------------------------------------------------------------------------------

    def _recover(self, *, recover_index: bool = True) -> None:
        """Bring the directory to a consistent state (called under the write lock). Nothing is deleted:
        what the commit point does not name moves to the quarantine folder. A damaged log is left as
        found (its reads and appends raise :class:`CorruptionError`; ``log repair`` fixes what it can)."""
        try:
            manifest = manifest_io.load(self.manifest_path)
        except CorruptionError:
            if recover_index:
                raise
            return  # opened for `reindex`, which rebuilds the manifest from the segments
        files = list_segment_files(self.segments_dir)
        if manifest is None:
            if files and not recover_index:
                return  # likewise: moving the "orphans" aside here would take the whole log away
            if files:
                raise StoreError(
                    f"{self.manifest_path} is missing but segments exist",
                    hint="run `settler log reindex` to rebuild it from the segments",
                )
            manifest = Manifest()
            manifest_io.store(self.manifest_path, manifest)
        self._view = None
        view = self.current_view()
        if view.damage:
            _log.warning("the event log at %s is damaged: %s", self.data_dir, "; ".join(view.damage))
            return
        strays = self.unknown_files(view)
        folder = quarantine.move_aside(self.root, strays)
        if folder is not None:
            _log.warning("moved %d file(s) the log does not name to %s", len(strays), folder)
        if view.torn_bytes:
            self._move_torn_record_aside(view)
            with open(view.wal_path, "rb+") as handle:
                handle.truncate(view.wal_valid_bytes)
                os.fsync(handle.fileno())
        if view.recorded_head is None or view.recorded_head < view.head:
            write_head(self.head_path, view.head)  # a log from before heads were recorded, or a crash
        if recover_index:
            self._sync_index(manifest)
        self._view = None

    def unknown_files(self, view: LogView) -> list[Path]:
        """Files in the log's data folders that the commit point does not name: leftovers of
        interrupted writes (staging files, segments no manifest names, superseded write-ahead files)
        and anything else put there. Recovery moves them to quarantine; ``verify`` reports them."""
        live = view.live_paths
        strays = sorted(p for p in self.staging_dir.rglob("*") if p.is_file())
        if self.segments_dir.exists():
            strays += sorted(
                p
                for p in self.segments_dir.rglob("*")
                if p.is_file()
                and p.relative_to(self.segments_dir).parts[0] != delta_table.LOG_FOLDER
                and p.relative_to(self.segments_dir).as_posix() not in live
            )
        if self.wal_dir.exists():
            strays += sorted(p for p in self.wal_dir.iterdir() if p != view.wal_path)
        if strays and delta_table.exists(self.segments_dir):
            # files the published table still names (a compaction stopped before publishing) stay
            published = {self.segments_dir / p for p in delta_table.current_files(self.segments_dir)}
            strays = [p for p in strays if p not in published]
        return strays

    def _sync_index(self, manifest: Manifest) -> None:
        """Make the index hold exactly the manifest's segments (removing extras, adding missing ones)."""
        live = {s.path: s for s in manifest.segments}
        backfill = self.index.path.exists() and not self.index.has_table("named_ids")
        with self.index.writing() as con:
            indexed = self.index.indexed_paths(con)
            if backfill:  # an index written before exact id lookups: add their rows once
                for path in sorted(indexed & set(live)):
                    file = self.segments_dir / path
                    verify_file(file)
                    ids = pl.read_parquet(file, columns=["event_id"])
                    self.index.add_named_ids(con, named_rows(ids, path, row_group_starts(file)))
            extra = sorted(indexed - set(live))
            self.index.remove_segments(con, extra)
            for path in sorted(set(live) - indexed):
                file = self.segments_dir / path
                verify_file(file)
                frame = pl.read_parquet(file).cast(POLARS_SCHEMA)  # type: ignore[arg-type]
                self.index.add_segments(con, [live[path]], [granules(frame, path, row_group_starts(file))])

    def purge_retired(self, grace_s: float = 3600.0) -> None:
        """Delete files compaction replaced more than ``grace_s`` seconds ago (their events are in the
        segments that replaced them)."""
        if not self.retired_dir.exists():
            return
        cutoff = time.time() - grace_s
        for path in self.retired_dir.rglob("*.parquet"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)

    def retire(self, paths: Sequence[str]) -> None:
        """Move replaced segment files out of the scanned tree; they are deleted after a grace period
        so that a reader holding an old manifest can still finish."""
        for relative in paths:
            source = self.segments_dir / relative
            target = self.retired_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.exists():
                os.replace(source, target)
                os.utime(target)

    def rebuild_manifest_from_files(self) -> Manifest:
        """Describe every segment file on disk into a fresh manifest (the write-ahead tail is kept)."""
        infos = [describe_file(p, self.segments_dir) for p in list_segment_files(self.segments_dir)]
        try:
            old = manifest_io.load(self.manifest_path)
        except CorruptionError:
            old = None
        head = max((i.last_position for i in infos), default=0)
        frame = (
            pl.scan_parquet([self.segments_dir / i.path for i in infos], schema=pl.Schema(POLARS_SCHEMA))
            .select(pl.col("event_id").max(), pl.col("aggregate_id").max(), pl.col("created_at").max())
            .collect()
            if infos
            else None
        )
        manifest = Manifest(
            generation=(old.generation + 1) if old else 1,
            segments_head=head,
            wal_first_position=head + 1,
            last_created_at=frame["created_at"][0].isoformat() if frame is not None else None,
            max_event_id=str(frame["event_id"][0]) if frame is not None else "",
            max_aggregate_id=str(frame["aggregate_id"][0]) if frame is not None else "",
            segments=tuple(sorted(infos, key=lambda s: (s.first_position, s.path))),
            lost=old.lost if old else (),
        )
        if old is not None and old.wal_first_position == head + 1:
            manifest = replace(manifest, wal_first_position=old.wal_first_position)
        return manifest

    def remove_all_index_files(self) -> None:
        """Delete the index database (``reindex`` rebuilds it)."""
        for path in (self.index.path, self.index.path.with_name(self.index.path.name + ".wal")):
            if path.exists():
                path.unlink()

    def copy_to(self, target: Path) -> None:
        """Copy the whole log directory (tests and backups)."""
        shutil.copytree(self.root, target / "log")


def _with_damage(view: LogView, contents: wal.WalContents, recorded: int | CorruptionError | None) -> LogView:
    """``view`` with what is wrong with it: damaged write-ahead records (and the positions they held),
    and acknowledged positions (the recorded head) that neither the segments nor the tail hold."""
    problems: list[str] = []
    name = f"wal/{view.wal_path.name}"
    for damaged in contents.mid_file_damage:
        lost = damaged.lost
        what = f"positions {lost[0]}..{lost[1]} lost" if lost else "no positions lost"
        problems.append(
            f"{name}: bytes {damaged.start}..{damaged.end} are damaged ({what}; the intact records "
            "after them are kept)"
        )
    if isinstance(recorded, CorruptionError):
        problems.append(str(recorded))
        recorded = None
    held = view.head
    trailing = contents.trailing
    torn = 0
    if recorded is not None and recorded > held:
        missing = f"acknowledged positions {held + 1}..{recorded}"
        if trailing is not None:
            problems.append(f"{name}: bytes {trailing.start}..{trailing.end} are damaged; {missing} are lost")
        else:
            cause = "is missing" if not view.wal_path.exists() else "was truncated"
            problems.append(
                f"{missing} are missing: the write-ahead file {name} {cause}, or the commit point "
                f"(manifest.json, generation {view.manifest.generation}) is older than the log"
            )
    elif trailing is not None:
        torn = trailing.end - trailing.start  # never acknowledged: a write cut short by a crash
    return replace(view, recorded_head=recorded, damage=tuple(problems), torn_bytes=torn)


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
