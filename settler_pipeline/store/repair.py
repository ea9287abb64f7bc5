"""`repair`: do what can be done for a damaged log, keep every intact event, never reuse a position."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from settler_pipeline.errors import CorruptionError, StoreError
from settler_pipeline.store import quarantine, wal
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import EventStore, LogView
from settler_pipeline.store.head import write_head
from settler_pipeline.store.locks import file_lock
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.recovery import describe_missing
from settler_pipeline.store.reindex import check_contiguous, reindex
from settler_pipeline.store.segments import (
    SEGMENT_NAME,
    list_segment_files,
    verify_file,
)
from settler_pipeline.store.verify import copy_problems, index_disagreements


@dataclass
class RepairReport:
    """What ``repair`` did (``actions``) and what it could not do (``unresolved``)."""

    actions: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unresolved

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def open_for_repair(data_dir: str | os.PathLike[str]) -> tuple[EventStore, list[str]]:
    """Open the log under ``data_dir`` as a writer for :func:`repair`, and what was done to its index
    on the way: a missing index, or one DuckDB cannot open (moved to the quarantine folder first, as
    opening would fail on it), is rebuilt from the segment files by opening the log. Pass the actions
    returned to :func:`repair` so its report names them."""
    actions: list[str] = []
    try:
        with EventStore.open(data_dir, read_only=True) as probe:
            index = probe.index
            if not index.path.exists():
                actions.append(f"rebuilt the missing index {index.path} from the segment files")
            else:
                try:
                    index.query("SELECT 1")
                except CorruptionError:
                    with file_lock(index.lock_path):
                        folder = quarantine.move_aside(probe.root, [index.path, Path(f"{index.path}.wal")])
                    actions.append(
                        f"moved the unreadable index {index.path} to {folder} and rebuilt it from the "
                        "segment files"
                    )
    except StoreError:
        pass  # a log the probe cannot read: opening it as a writer says what is wrong
    return EventStore.open(data_dir), actions


def repair(store: EventStore, *, accept_loss: bool = False, done: Sequence[str] = ()) -> RepairReport:
    """Do what can be done for a damaged log, keeping every intact event and never reusing a position:

    * a Delta transaction log that cannot be replayed (a commit file missing from its middle, a damaged
      checkpoint) while its newest commit names segment files that are all there: that state is
      committed again into a new transaction log (the unreadable one moves to the quarantine folder),
      so every event, the write-ahead tail and the lost positions stay as they were;
    * a commit point older than the segment files (newer Delta commit files lost, or an older copy of
      the transaction log put back) is rebuilt from the files, as a new Delta commit, when they hold
      contiguous positions;
    * a write-ahead file with damaged records is moved to the quarantine folder and replaced by one
      holding its intact records; the positions the damage held are recorded as lost;
    * acknowledged positions that nothing holds (a truncated or deleted write-ahead file) are recorded
      as lost, so they are never handed out again;
    * files the commit point does not name move to the quarantine folder;
    * the index is rebuilt when it disagrees.

    Segments whose bytes changed, and segment files the commit point names that are missing, cannot
    be repaired here: they are reported (restore them from a backup and repair again). Without a
    backup, ``accept_loss`` rebuilds the commit point from the files there are and records the
    positions only the missing files held as lost (never reused), so the log can go on. Run
    ``verify`` afterwards. ``done`` are actions already taken (see :func:`open_for_repair`), reported
    first."""
    report = RepairReport(actions=list(done))
    with store.write_lock():
        view = store.current_view()
        if _recommit_unreplayable(store, view, report):
            view = store.current_view()
        if _commit_point_behind(store, view):
            missing = store.missing_segments(view.manifest)
            gone: list[tuple[int, int]] = []
            try:
                rebuilt = store.rebuild_manifest_from_files()
                if accept_loss and (gone := _held_only_by_missing(missing, rebuilt)):
                    rebuilt = replace(
                        rebuilt,
                        segments_head=max(rebuilt.segments_head, view.manifest.segments_head),
                        wal_first_position=view.manifest.wal_first_position,
                        lost=tuple(sorted({*rebuilt.lost, *gone})),
                    )
                check_contiguous(rebuilt)
                if rebuilt.segments_head < view.manifest.segments_head:
                    # the files on disk end before the committed head: rebuilding would turn a
                    # missing file (one a backup can give back) into lost positions
                    raise StoreError(f"the files end at position {rebuilt.segments_head}")
            except StoreError as exc:
                if missing:
                    report.unresolved.append(
                        describe_missing(missing) + ": restore the missing files from a backup of the data "
                        "directory, then run `settler log repair` again; without a backup, `settler log "
                        "repair --accept-loss` records their positions as lost (never reused) so the log "
                        "can go on"
                    )
                else:
                    report.unresolved.append(f"the commit point does not match the segment files: {exc}")
            else:
                store.store_state(rebuilt)
                report.actions.append(
                    "rebuilt the commit point (a new Delta commit) from "
                    f"{len(rebuilt.segments)} segment files "
                    f"(positions up to {rebuilt.segments_head})"
                )
                if gone:
                    report.lost.extend(gone)
                    report.actions.append(
                        "recorded lost positions "
                        + ", ".join(f"{a}..{b}" for a, b in gone)
                        + " (their segment files are missing; never reused)"
                    )
                store.forget_view()
                view = store.current_view()
        lost = _repair_tail(store, view, report)
        if lost:
            manifest = replace(
                view.manifest, generation=view.manifest.generation + 1, lost=(*view.manifest.lost, *lost)
            )
            store.store_state(manifest)
            report.lost.extend(lost)
            report.actions.append(
                "recorded lost positions " + ", ".join(f"{a}..{b}" for a, b in lost) + " (never reused)"
            )
            store.forget_view()
            view = store.current_view()
        write_head(store.head_path, max(view.head, view.recorded_head or 0))
        # while named files are missing, a file it does not name may be the only copy: none moves
        strays = [] if store.missing_segments(view.manifest) else store.unknown_files(view)
        folder = quarantine.move_aside(store.root, strays)
        if folder is not None:
            report.quarantine.append(str(folder))
            report.actions.append(f"moved {len(strays)} file(s) the log does not name to {folder}")
        for seg in view.manifest.segments:
            try:
                verify_file(store.segments_dir / seg.path)
            except (StoreError, FileNotFoundError) as exc:
                report.unresolved.append(
                    f"{seg.path} (positions {seg.first_position}..{seg.last_position}) cannot be read: "
                    f"{exc}; restore it from a backup of the data directory"
                )
        store.forget_view()
    manifest = store.current_view().manifest
    if not report.unresolved and index_disagreements(store, manifest):
        reindex(store)
        report.actions.append("rebuilt the index from the segment files")
    elif not report.unresolved and copy_problems(store, list(manifest.segments)):
        reindex(store)  # stream copies are derived: loads read the segments until new ones are written
        report.actions.append("set the damaged or missing stream copies aside and rebuilt the index")
    return report


def _recommit_unreplayable(store: EventStore, view: LogView, report: RepairReport) -> bool:
    """Commit the newest commit's state again when ``deltalake`` cannot replay the transaction log and
    every segment file that state names is there (missing ones are the commit-point repair's case).
    Whether it did."""
    problem = delta_table.replay_problem(store.segments_dir)
    if problem is None or store.state_version is None or store.missing_segments(view.manifest):
        return False
    store.store_state(replace(view.manifest, generation=view.manifest.generation + 1))
    store.forget_view()
    report.actions.append(
        "rebuilt the Delta transaction log from the state its newest commit holds "
        f"({len(view.manifest.segments)} segment files, positions up to {view.manifest.segments_head}; "
        f"it could not be replayed: {problem}); the unreadable log is in the quarantine folder"
    )
    return True


def _commit_point_behind(store: EventStore, view: LogView) -> bool:
    """True when segment files hold positions past the commit point's, or it names missing files."""
    named = {s.path for s in view.manifest.segments}
    for path in list_segment_files(store.segments_dir):
        match = SEGMENT_NAME.match(path.name)
        relative = path.relative_to(store.segments_dir).as_posix()
        if match and relative not in named and int(match.group(2)) > view.manifest.segments_head:
            return True
    return bool(store.missing_segments(view.manifest))


def _repair_tail(store: EventStore, view: LogView, report: RepairReport) -> list[tuple[int, int]]:
    """Rewrite a damaged write-ahead file with its intact records; the position ranges lost."""
    contents = wal.read(view.wal_path, after_position=view.manifest.wal_first_position - 1)
    lost = [d.lost for d in contents.mid_file_damage if d.lost is not None]
    held = view.head
    recorded = view.recorded_head or 0
    if recorded > held:
        lost.append((held + 1, recorded))
    if contents.mid_file_damage or (contents.trailing is not None and recorded > held):
        folder = quarantine.new_folder(store.root)
        shutil.copy2(view.wal_path, folder / view.wal_path.name)
        wal.write_new(view.wal_path, contents.batches)
        report.quarantine.append(str(folder))
        report.actions.append(
            f"kept {contents.rows} intact events of wal/{view.wal_path.name} "
            f"(the damaged file is in {folder})"
        )
    if lost:
        report.unresolved.append(
            "events at positions "
            + ", ".join(f"{a}..{b}" for a, b in lost)
            + " cannot be recovered from this directory (restore a backup to get them back)"
        )
    return lost


def _held_only_by_missing(missing: Sequence[SegmentInfo], rebuilt: Manifest) -> list[tuple[int, int]]:
    """The position ranges of the ``missing`` segments less what the files there are (``rebuilt``)
    hold."""
    held = sorted((seg.first_position, seg.last_position) for seg in rebuilt.segments)
    gone: list[tuple[int, int]] = []
    for first, last in sorted((seg.first_position, seg.last_position) for seg in missing):
        start = first
        for low, high in held:
            if high < start or low > last:
                continue
            if low > start:
                gone.append((start, low - 1))
            start = max(start, high + 1)
        if start <= last:
            gone.append((start, last))
    return gone
