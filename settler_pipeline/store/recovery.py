"""Recovery of a log after an interrupted write, by a writer under the write lock: nothing is deleted
(what the commit point does not name moves to quarantine) and a damaged log is left as found."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl

from settler_pipeline.errors import (
    CorruptionError,
    StoreError,
)
from settler_pipeline.files import fsync_dir
from settler_pipeline.store import manifest as manifest_io
from settler_pipeline.store import quarantine, rollups
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.head import write_head
from settler_pipeline.store.index import granules, named_rows
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.schema import (
    POLARS_SCHEMA,
)
from settler_pipeline.store.segments import (
    SEGMENT_NAME,
    describe_file,
    list_segment_files,
    row_group_starts,
    verify_file,
)
from settler_pipeline.store.view import LogBase, LogView

_log = logging.getLogger("settler_pipeline.store.event_store")
RETIRE_GRACE_HOURS = 1  # how long earlier table versions stay readable after a compaction
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LogRecovery(LogBase):
    """Recovery after interrupted writes (deleting nothing) and the file operations maintenance needs."""

    def _recover(self, *, recover_index: bool = True) -> None:
        """Bring the directory to a consistent state (called under the write lock). Nothing is deleted:
        what the commit point does not name moves to the quarantine folder. A damaged log is left as
        found (its reads and appends raise :class:`CorruptionError`; ``log repair`` fixes what it can).
        A directory of the former layout is migrated first (see :meth:`_migrate`)."""
        try:
            self._set_aside_torn_commit()
            if not self._migrate():
                return  # a damaged log of the former layout: left as found
            manifest = self.stored_state()
        except CorruptionError:
            if recover_index:
                raise
            return  # opened for `reindex`, which rebuilds the commit point from the segments
        files = list_segment_files(self.segments_dir)
        if manifest is None:
            if files and not recover_index:
                return  # likewise: moving the "orphans" aside here would take the whole log away
            if files:
                raise StoreError(
                    f"the event log at {self.root} has segment files but no commit point "
                    f"({self.segments_dir / delta_table.LOG_FOLDER} is missing)",
                    hint="run `settler log reindex` to rebuild it from the segments",
                )
            manifest = Manifest()
            self._commit_state(manifest)  # version 0 of the table: an empty log any engine can read
        self._view = None
        view = self.current_view()
        if view.damage:
            _log.warning("the event log at %s is damaged: %s", self.data_dir, "; ".join(view.damage))
            return
        if missing := self.missing_segments(view.manifest):
            # An older transaction log put back (naming files a compaction replaced), or files deleted:
            # the files it does not name may be the only copies of these events, so nothing moves.
            _log.warning("the event log at %s is damaged: %s", self.data_dir, describe_missing(missing))
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

    def _set_aside_torn_commit(self) -> None:
        """A power loss during a Delta commit can leave the newest commit file empty, zero-filled or cut
        short: its name reached the disk, its bytes did not. Such a commit was never acknowledged (a
        commit returns only after its file is synced), and its events are still in the write-ahead file
        or belonged to an append that had not returned. The file moves to the quarantine folder, making
        the version before it the newest again, and stays there only if the log then still holds every
        acknowledged position (the recorded head); otherwise it is put back and the log left as found."""
        version = delta_table.newest_version(self.segments_dir)
        if not version:  # no table, or only version 0: nothing to go back to
            return
        path = delta_table.commit_file(self.segments_dir, version)
        if not delta_table.is_torn(path):
            return
        if delta_table.read_state(self.segments_dir, version - 1) is None:
            return  # the version before carries no state (a table of the former layout): leave it
        folder = quarantine.move_aside(self.root, [path])
        if folder is None:
            return
        self._state_cache = None
        self._view = None
        view = self.current_view()
        # acknowledged positions would be missing, or files the version before names: it was
        # acknowledged. (A compaction's commit cut short goes back to the version before losing nothing:
        # the files it replaced stay in place until a later vacuum, whose own commits come after it.)
        if view.damage or self.missing_segments(view.manifest):
            os.replace(folder / path.relative_to(self.root), path)
            fsync_dir(path.parent)
            shutil.rmtree(folder)  # empty again: only the directories made for the move
            self._state_cache = None
            self._view = None
            return
        _log.warning(
            "%s was cut short by an interrupted commit that was never acknowledged; moved it to %s, "
            "the log goes on from version %d",
            path,
            folder,
            version - 1,
        )

    def _migrate(self) -> bool:
        """Move the commit point of a directory written when ``manifest.json`` was it into the Delta
        log: one commit carrying the manifest's state (and making the table's files exactly its
        segments), then the file moves to the quarantine folder, never to be read again. Returns
        ``False`` when the former layout's log is damaged (it is then left exactly as found)."""
        if not self.manifest_path.exists():
            return True
        version = delta_table.newest_version(self.segments_dir)
        if version is None or delta_table.read_state(self.segments_dir, version) is None:
            legacy = manifest_io.load(self.manifest_path) or Manifest()
            self._view = None
            view = self.current_view()
            if view.damage:
                _log.warning("the event log at %s is damaged: %s", self.data_dir, "; ".join(view.damage))
                return False
            self._commit_state(replace(legacy, generation=legacy.generation + 1))
        # committed (now or by a migration stopped right after its commit): the file is stale
        folder = quarantine.move_aside(self.root, [self.manifest_path])
        self._manifest_cache = None
        self._view = None
        _log.warning("the Delta log is now the commit point; the former manifest.json is kept in %s", folder)
        return True

    def has_commit_point(self) -> bool:
        """Whether the log has a commit point (a Delta table, or a former ``manifest.json``)."""
        return delta_table.newest_version(self.segments_dir) is not None or self.manifest_path.exists()

    def stored_state(self) -> Manifest | None:
        """The committed state, or ``None`` when the log has no commit point; raises
        :class:`CorruptionError` when it cannot be read."""
        if not self.has_commit_point():
            return None
        self._state_cache = None
        return self._load_manifest()

    def store_state(self, state: Manifest) -> None:
        """Commit ``state`` (maintenance: ``repair`` and ``reindex``; under :meth:`write_lock`). A
        transaction log that cannot be read or replayed is first moved to the quarantine folder whole, and the
        table is created anew from ``state``."""
        try:
            self.stored_state()
            unreadable = delta_table.replay_problem(self.segments_dir) is not None
        except CorruptionError:
            unreadable = True
        if unreadable:
            folder = quarantine.move_aside(self.root, [self.segments_dir / delta_table.LOG_FOLDER])
            self._state_cache = None
            _log.warning("moved the unreadable Delta transaction log to %s", folder)
        self._commit_state(state)
        if self.manifest_path.exists():
            quarantine.move_aside(self.root, [self.manifest_path])
            self._manifest_cache = None

    def missing_segments(self, state: Manifest) -> list[SegmentInfo]:
        """The segments ``state`` names whose files are not there."""
        return [seg for seg in state.segments if not (self.segments_dir / seg.path).is_file()]

    def unknown_files(self, view: LogView) -> list[Path]:
        """Files in the log's data folders that the commit point does not name: leftovers of
        interrupted writes (staging files, segments no commit names, superseded write-ahead files)
        and anything else put there. Recovery moves them to quarantine; ``verify`` reports them."""
        live = view.live_paths
        strays = sorted(p for p in self.staging_dir.rglob("*") if p.is_file())
        if self.segments_dir.exists():
            unnamed = sorted(
                p
                for p in self.segments_dir.rglob("*")
                if p.is_file()
                and p.relative_to(self.segments_dir).parts[0] != delta_table.LOG_FOLDER
                and p.relative_to(self.segments_dir).as_posix() not in live
            )
            if unnamed:  # files compaction replaced stay for earlier versions until the table's vacuum
                replaced = delta_table.removed_files(self.segments_dir)
                strays += [p for p in unnamed if p.relative_to(self.segments_dir).as_posix() not in replaced]
        if self.wal_dir.exists():
            strays += sorted(p for p in self.wal_dir.iterdir() if p != view.wal_path)
        if self.copies_dir.exists():
            # a stream copy is named like its segment (folder and positions; its own checksum)
            copied = {_place(Path(seg.path)) for seg in view.manifest.segments}
            strays += sorted(p for p in self.copies_dir.rglob("*") if p.is_file() and _place(p) not in copied)
        # a rollup is named by its segment: one whose segment is not committed is a leftover
        named = {Path(seg.path).name.removesuffix(".parquet") for seg in view.manifest.segments}
        strays += sorted(p for stem, p in rollups.listing(self.rollups_dir).items() if stem not in named)
        return strays

    def _sync_index(self, manifest: Manifest) -> None:
        """Make the index hold exactly the state's segments (removing extras, adding missing ones)."""
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
                frame = pl.read_parquet(file, columns=list(POLARS_SCHEMA)).cast(POLARS_SCHEMA)  # type: ignore[arg-type]
                self.index.add_segments(con, [live[path]], [granules(frame, path, row_group_starts(file))])

    def purge_retired(self, grace_hours: int = RETIRE_GRACE_HOURS) -> None:
        """Delete the segment files compaction replaced more than ``grace_hours`` ago (the table's
        VACUUM: their events are in the segments that replaced them, and earlier table versions stay
        readable until then), and the derived files moved to ``retired/`` as long ago."""
        delta_table.vacuum(self.segments_dir, grace_hours)
        if not self.retired_dir.exists():
            return
        cutoff = time.time() - grace_hours * 3600
        for path in self.retired_dir.rglob("*.parquet"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)

    def rebuild_manifest_from_files(self) -> Manifest:
        """Describe every segment file on disk into a fresh state (the write-ahead tail is kept)."""
        infos = _without_replaced(
            [describe_file(p, self.segments_dir) for p in list_segment_files(self.segments_dir)]
        )
        try:
            old = self.stored_state()
        except CorruptionError:
            old = None
        head = max((i.last_position for i in infos), default=0)
        frame = (
            pl.scan_parquet(
                [self.segments_dir / i.path for i in infos],
                schema=pl.Schema(POLARS_SCHEMA),
                extra_columns="ignore",
            )
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


def _without_replaced(infos: Sequence[SegmentInfo]) -> list[SegmentInfo]:
    """``infos`` less each segment whose positions lie inside another's of the same event date: a file
    compaction replaced stays in place for earlier table versions until the vacuum, and the merged file
    holds its events. (Segments of different dates interleave positions; of one date they do not, as
    each commit writes positions after the previous one's.) Identical or partly overlapping ranges are
    all kept: the caller reports them as duplicated."""
    kept: list[SegmentInfo] = []
    by_date: dict[str, list[SegmentInfo]] = {}
    for info in infos:
        by_date.setdefault(info.event_date, []).append(info)
    for group in by_date.values():
        outer: SegmentInfo | None = None
        for info in sorted(group, key=lambda i: (i.first_position, -i.last_position, i.path)):
            span = (info.first_position, info.last_position)
            if outer is not None and _inside(span, (outer.first_position, outer.last_position)):
                continue
            if outer is None or info.last_position > outer.last_position:
                outer = info
            kept.append(info)
    return kept


def _inside(span: tuple[int, int], outer: tuple[int, int]) -> bool:
    """Whether ``span`` lies inside ``outer`` and is not the same range."""
    return outer[0] <= span[0] and span[1] <= outer[1] and span != outer


def _place(path: Path) -> tuple[str, str, str] | None:
    """The event-date folder and positions a segment or stream copy file is named by (``None`` for
    another file)."""
    match = SEGMENT_NAME.match(path.name)
    return (path.parent.name, match.group(1), match.group(2)) if match else None


def describe_missing(segments: Sequence[SegmentInfo]) -> str:
    """What is missing, for messages: each segment file with the positions it held."""
    return "; ".join(
        f"segment {seg.path} (positions {seg.first_position}..{seg.last_position}) is missing"
        for seg in segments
    )
