"""One consistent view of the committed log, and the state a store instance keeps to read it cheaply.

A view is the log's state at one table version (see ``table.py``), the write-ahead records after it,
the recorded head and any damage found on the way (see ``docs/architecture.md``): readers read the
recorded head, then the state, then the write-ahead records, so every head they see is covered by
what they read.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.errors import (
    CorruptionError,
    StoreError,
)
from settler_pipeline.store import manifest as manifest_io
from settler_pipeline.store import quarantine, rollups, stream_copies, wal
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.envelopes import frame_to_envelopes
from settler_pipeline.store.head import read_head
from settler_pipeline.store.index import EventIndex
from settler_pipeline.store.locks import file_lock
from settler_pipeline.store.manifest import Manifest
from settler_pipeline.store.named_ids import NamedIds
from settler_pipeline.store.schema import POLARS_SCHEMA
from settler_pipeline.store.segment_reader import SegmentReader
from settler_pipeline.store.snapshots import SnapshotStore
from settler_pipeline.store.stream_granules import StreamGranules
from settler_pipeline.store.tail import Tail

_log = logging.getLogger("settler_pipeline.store.event_store")
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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
                f"(the Delta log's newest commit, generation {view.manifest.generation}) is older than "
                "the log"
            )
    elif trailing is not None:
        torn = trailing.end - trailing.start  # never acknowledged: a write cut short by a crash
    return replace(view, recorded_head=recorded, damage=tuple(problems), torn_bytes=torn)


class LogBase:
    """The state a store instance keeps and the view of the committed log it reads; the reader, writer
    and recovery parts build on it (see :class:`~settler_pipeline.store.event_store.EventStore`)."""

    def __init__(
        self, data_dir: Path, *, registry: EventRegistry, lock_timeout_s: float, read_only: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "log"
        self.segments_dir = self.root / "segments"
        self.staging_dir = self.root / ".staging"
        self.wal_dir = self.root / "wal"
        self.retired_dir = self.root / "retired"
        self.copies_dir = self.root / stream_copies.FOLDER
        self.rollups_dir = self.root / rollups.FOLDER
        self.manifest_path = self.root / "manifest.json"
        self.head_path = self.root / "head"
        self.write_lock_path = self.root / "write.lock"
        self.registry = registry
        self.lock_timeout_s = lock_timeout_s
        self.read_only = read_only
        self.index = EventIndex(self.root / "index.duckdb", read_only=read_only)
        self.snapshots = SnapshotStore(self.root / "snapshots.duckdb", read_only=read_only)
        self._reader = SegmentReader(self.segments_dir)
        self._copy_reader = SegmentReader(self.copies_dir, fix=stream_copies.DAMAGED_FIX)
        self._view: LogView | None = None
        # the newest state read from the table, with its version
        self._state_cache: tuple[int, Manifest] | None = None
        # a former manifest.json read and the (inode, mtime, size) of the file it was read from
        self._manifest_cache: tuple[tuple[int, int, int], Manifest] | None = None
        self._versions: dict[str, int] = {}
        self._stream_granules = StreamGranules(self.index)
        self._named = NamedIds(self.index)
        self._versions_at = 0

    def roll_up(self, rows: pl.DataFrame) -> Callable[[str], object]:
        """Build the rollup of a segment's ``rows`` (:mod:`~settler_pipeline.store.rollups`) and return
        what writes it, if it gets one, once the segment's relative path is known."""
        rolled = rollups.build(rows, rollups.MIN_SHARE)
        return lambda segment: rollups.place(segment, rolled, self.rollups_dir, self.staging_dir)

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

    def _load_manifest(self) -> Manifest:
        """The log's state at the table's newest version (cached: one stat when nothing was committed
        since); before a writer migrated a directory of the former layout, its ``manifest.json``."""
        cached = self._state_cache
        if cached is not None and not delta_table.has_newer(self.segments_dir, cached[0]):
            return cached[1]
        version = delta_table.newest_version(self.segments_dir, cached[0] if cached else None)
        state = delta_table.read_state(self.segments_dir, version) if version is not None else None
        if state is None:
            legacy = self._legacy_manifest()
            if legacy is not None:
                return legacy
            if version is not None:
                newest = delta_table.commit_file(self.segments_dir, version)
                raise CorruptionError(
                    f"the newest commit of the event log's table ({newest}) carries no Settler state: "
                    "it was not made by Settler",
                    hint="run `settler log reindex` to rebuild the commit point from the segment files",
                )
            return Manifest()
        assert version is not None
        self._state_cache = (version, state)
        return state

    def _legacy_manifest(self) -> Manifest | None:
        """The state in ``manifest.json`` of a directory written before the Delta log was the commit
        point and not yet migrated by a writer (see ``manifest.py``), cached by inode/mtime/size."""
        try:
            st = os.stat(self.manifest_path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._manifest_cache is not None and self._manifest_cache[0] == stamp:
            return self._manifest_cache[1]
        loaded = manifest_io.load(self.manifest_path) or Manifest()
        self._manifest_cache = (stamp, loaded)
        return loaded

    def _commit_state(self, state: Manifest) -> None:
        """Commit ``state`` as the table's next version (the commit point; under the write lock)."""
        version = delta_table.commit(self.segments_dir, state)
        self._state_cache = (version, state)
        self._view = None

    @property
    def state_version(self) -> int | None:
        """The table version the cached state was read from (``None`` before one was read)."""
        return self._state_cache[0] if self._state_cache else None

    def _refresh(self) -> LogView:
        """The current committed log (cheap when nothing changed: a stat and an incremental read);
        raises :class:`CorruptionError` when the log is damaged."""
        view = self.current_view()
        view.check()
        return view

    def committed_view(self) -> LogView:
        """The current committed log; raises :class:`CorruptionError` when it is damaged."""
        return self._refresh()

    def current_view(self) -> LogView:
        """The current committed log, damaged or not (``view.damage`` says what is wrong)."""
        for _ in range(50):
            previous = self._view
            manifest = self._load_manifest()
            wal_path = self.wal_dir / wal.wal_name(manifest.wal_first_position)
            stamp = wal.stamp(wal_path)
            same_table = (
                previous is not None
                and previous.manifest.generation == manifest.generation
                and previous.wal_path == wal_path
            )
            if same_table and previous is not None and stamp == previous.wal_stamp:
                # nothing appended since: a stat instead of an open and read (also when there is no
                # write-ahead file, as right after a flush)
                return previous
            if (
                same_table
                and previous is not None
                and previous.wal_stamp[0] == stamp[0]
                and stamp[1] >= previous.wal_valid_bytes + previous.torn_bytes
            ):
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

    def forget_view(self) -> None:
        """Drop the cached view: the next read looks at the files afresh (after maintenance)."""
        self._view = None

    def _read_granules(
        self,
        sql: str | Callable[[LogView], Sequence[tuple[str, int] | tuple[str, int, str]]],
        params: list[Any],
        row_filter: pl.Expr,
        view: LogView | None = None,
        *,
        with_tail: bool = False,
    ) -> pl.DataFrame:
        """Rows of the row groups an index query names (``segment_path, row_group``, or with a third
        item naming the segment's stream copy to read them from), keeping those that match
        ``row_filter``; in position order. Only segments of the view's manifest are read,
        and the read is retried with a fresh view if a flush or compaction replaced the manifest
        meanwhile (the index may then lack the view's segments, or the view's tail may have moved
        into segments). With ``with_tail`` the matching write-ahead events of the same view are added."""
        for _ in range(20):
            current = view or self._refresh()
            found = sql(current) if callable(sql) else self.index.query(sql, params)
            live = current.live_paths
            groups: dict[tuple[str, str], set[int]] = {}
            for path, row_group, *copy in found:
                if path in live:
                    groups.setdefault((path, copy[0] if copy else ""), set()).add(int(row_group))
            try:
                parts = [
                    (self._copy_reader if copy else self._reader)
                    .read_groups(copy or path, sorted(gs))
                    .filter(row_filter)
                    for (path, copy), gs in sorted(groups.items())
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
            return (parts[0] if len(parts) == 1 else pl.concat(parts)).sort("global_position")
        raise StoreError("the log kept being compacted while being read", hint="retry the read")

    def _locate(self, sql: str, params: list[Any], row_filter: pl.Expr) -> pl.DataFrame:
        """Committed events matching ``row_filter`` from the granules ``sql`` names plus the tail."""
        return self._read_granules(sql, params, row_filter, with_tail=True)

    def _envelopes(self, rows: pl.DataFrame) -> list[EventEnvelope]:
        return [self.registry.upcast(event) for event in frame_to_envelopes(rows)]

    def _move_torn_record_aside(self, view: LogView) -> None:
        """Keep the unreadable bytes after the last intact write-ahead record (a write that was never
        acknowledged) in the quarantine folder; the next append writes over them."""
        with open(view.wal_path, "rb") as handle:
            handle.seek(view.wal_valid_bytes)
            torn = handle.read()
        kept = quarantine.save_bytes(self.root, f"{view.wal_path.name}.torn-at-{view.wal_valid_bytes}", torn)
        _log.info("moved a torn write-ahead record (%d bytes) to %s", len(torn), kept)

    @property
    def table_uri(self) -> str:
        """Where the published log (a Delta Lake table) lives; see :mod:`settler_pipeline.store.table`."""
        return delta_table.table_uri(self.segments_dir)

    @property
    def head_position(self) -> int:
        """The global position of the newest committed event (0 for an empty log)."""
        return self._refresh().head
