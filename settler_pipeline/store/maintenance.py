"""Maintenance of the log: verify, compact, reindex, stats.

* ``verify`` reads everything and changes nothing: every committed segment exists and its bytes match
  the checksum recorded in its name and in the manifest, positions are exactly ``1..head`` with no gap
  or duplicate, stream versions are ``1..n`` per stream, event ids are unique, and the index agrees
  with the segments. Each problem is reported; none is fixed.
* ``compact`` merges small segments of an event date into larger ones. Events, positions and versions
  are unchanged; replaced files move to ``retired/`` and are deleted after a grace period, so readers
  holding the previous manifest can finish.
* ``reindex`` rebuilds the DuckDB index (and, if it is missing, the manifest) from the segment files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.errors import StoreError
from settler_pipeline.store import manifest as manifest_io
from settler_pipeline.store import quarantine, wal
from settler_pipeline.store.event_store import EventStore, LogView
from settler_pipeline.store.head import write_head
from settler_pipeline.store.index import TABLES, EventIndex, granules
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.schema import POLARS_SCHEMA
from settler_pipeline.store.segments import (
    SEGMENT_NAME,
    file_sha256,
    list_segment_files,
    row_group_starts,
    verify_file,
    write_segments,
)

COMPACT_TARGET_ROWS = 1_000_000


@dataclass
class VerifyReport:
    """What ``verify`` found; ``ok`` is true when ``problems`` is empty. ``lost`` lists position ranges
    an earlier ``repair`` recorded as lost (reported, but no longer a problem)."""

    head_position: int = 0
    recorded_head: int | None = None
    events: int = 0
    segments: int = 0
    wal_events: int = 0
    checked_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


_VERIFY_COLUMNS = ["global_position", "event_id", "aggregate_id", "aggregate_version", "event_type"]


def verify(store: EventStore) -> VerifyReport:
    """Check the log end to end (see the module docstring); opens no file for writing and changes
    nothing, so it runs on a store opened with ``read_only=True``."""
    report = VerifyReport()
    try:
        manifest = manifest_io.load(store.manifest_path)
    except StoreError as exc:
        report.problems.append(str(exc))
        return report
    if manifest is None:
        report.problems.append("manifest.json is missing")
        return report
    view = store.current_view()
    manifest = view.manifest
    report.problems.extend(view.damage)
    report.recorded_head = view.recorded_head
    report.lost = list(manifest.lost)
    report.segments = len(manifest.segments)
    report.wal_events = view.tail.rows
    for path in store.unknown_files(view):
        report.problems.append(
            f"{path.relative_to(store.root).as_posix()}: not part of the log (a leftover of an interrupted "
            "write, or put there by hand); the next writer moves it to the quarantine folder"
        )
    frames = [frame for seg in manifest.segments if (frame := _check_segment(store, seg, report)) is not None]
    if view.tail.rows:
        frames.append(view.tail.frame.select(_VERIFY_COLUMNS))
    report.head_position = view.head
    if not frames:
        return report
    events = pl.concat(frames)
    report.events = events.height
    _check_positions(events, view.head, manifest, report)
    report.problems.extend(_index_disagreements(store, manifest))
    return report


def _check_segment(store: EventStore, seg: SegmentInfo, report: VerifyReport) -> pl.DataFrame | None:
    """One committed segment's rows (the columns verify needs), or ``None`` with a problem reported."""
    path = store.segments_dir / seg.path
    if not path.exists():
        report.problems.append(
            f"{seg.path}: segment file is missing (positions {seg.first_position}..{seg.last_position})"
        )
        return None
    sha = file_sha256(path)
    report.checked_bytes += path.stat().st_size
    match = SEGMENT_NAME.match(path.name)
    if sha != seg.sha256 or match is None or not sha.startswith(match.group(3)):
        report.problems.append(
            f"{seg.path}: checksum mismatch (file changed since it was written; positions "
            f"{seg.first_position}..{seg.last_position} cannot be trusted)"
        )
        return None
    try:
        frame = pl.read_parquet(path, columns=_VERIFY_COLUMNS)
    except Exception as exc:  # any unreadable file is a finding, not a crash
        report.problems.append(f"{seg.path}: unreadable ({exc})")
        return None
    if frame.height != seg.rows:
        report.problems.append(f"{seg.path}: {frame.height} rows, manifest says {seg.rows}")
    positions = frame["global_position"]
    if positions.len() and (positions.min() != seg.first_position or positions.max() != seg.last_position):
        report.problems.append(f"{seg.path}: positions do not match the manifest's range")
    return frame


def _check_positions(events: pl.DataFrame, head: int, manifest: Manifest, report: VerifyReport) -> None:
    """Positions are exactly 1..head less the recorded losses; ids unique; versions in order."""
    positions = events["global_position"]
    duplicates = positions.is_duplicated().sum()
    if duplicates:
        report.problems.append(f"{duplicates} rows share a global position with another row")
    lost = pl.lit(False)
    for first, last in manifest.lost:
        lost = lost | pl.col("global_position").is_between(first, last)
    if events.filter(lost).height:
        report.problems.append("events hold positions recorded as lost")
    distinct = positions.n_unique()
    if distinct != head - manifest.lost_count or int(positions.min()) != 1 + _lost_prefix(manifest):  # type: ignore[arg-type]
        report.problems.append(
            f"positions are not contiguous: {distinct} distinct positions up to {head}"
            + (f" ({manifest.lost_count} recorded lost)" if manifest.lost else "")
        )
    if events["event_id"].is_duplicated().any():
        report.problems.append("some event ids appear more than once")
    # With recorded losses a stream may miss versions; they must still only ever increase.
    versions_ok = (
        pl.col("aggregate_version").list.eval(pl.element().diff().drop_nulls() > 0).list.all()
        & (pl.col("aggregate_version").list.first() >= 1)
        if manifest.lost
        else pl.col("aggregate_version")
        == pl.int_ranges(1, pl.col("aggregate_version").list.len() + 1, dtype=pl.Int64)
    )
    versions = (
        events.sort("global_position")
        .group_by("aggregate_id", maintain_order=True)
        .agg(pl.col("aggregate_version"))
        .filter(~versions_ok)
    )
    if versions.height:
        report.problems.append(
            f"{versions.height} stream(s) have versions that are not 1..n in log order, "
            f"e.g. {versions['aggregate_id'][0]}"
        )


def _lost_prefix(manifest: Manifest) -> int:
    """How many positions from 1 on are recorded lost (the log's first held position is after them)."""
    upto = 0
    for first, last in sorted(manifest.lost):
        if first != upto + 1:
            break
        upto = last
    return upto


def _expected_granules(store: EventStore, manifest: Manifest) -> dict[str, pl.DataFrame]:
    parts: dict[str, list[pl.DataFrame]] = {t: [] for t in TABLES}
    for seg in manifest.segments:
        path = store.segments_dir / seg.path
        if not path.exists():
            continue
        frame = pl.read_parquet(path).cast(POLARS_SCHEMA)  # type: ignore[arg-type]
        for table, rows in granules(frame, seg.path, row_group_starts(path)).items():
            parts[table].append(rows)
    return {t: pl.concat(p) if p else pl.DataFrame() for t, p in parts.items()}


def _index_disagreements(store: EventStore, manifest: Manifest) -> list[str]:
    problems: list[str] = []
    if not store.index.path.exists():
        return ["the index database is missing (run `settler log reindex`)"]
    expected = _expected_granules(store, manifest)
    live = sorted(s.path for s in manifest.segments)
    indexed = {row[0] for row in store.index.query("SELECT path FROM idx.segments")}
    for path in sorted(set(live) - indexed):
        problems.append(f"index has no entry for segment {path}")
    for table in TABLES:
        want = expected[table]
        got = store.index.query_frame(
            # table names are this module's constants; the live list is a bound parameter
            f"SELECT * FROM idx.{table} WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",  # noqa: S608
            [live],
        )
        if want.height == 0 and got.height == 0:
            continue
        want_s = _canonical(want)
        got_s = _canonical(got.select(want.columns) if want.height else got)
        if want_s.height != got_s.height or not want_s.equals(got_s):
            problems.append(
                f"index table {table} disagrees with the segments ({got.height} rows, {want.height} expected)"
            )
    return problems


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.with_columns(
        pl.col(c).cast(pl.String) for c, t in frame.schema.items() if not t.is_numeric()
    )
    return frame.sort(frame.columns, nulls_last=True)


@dataclass
class CompactReport:
    segments_before: int
    segments_after: int
    events_rewritten: int
    retired: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compact(store: EventStore, *, target_rows: int = COMPACT_TARGET_ROWS) -> CompactReport:
    """Merge runs of small segments (per event date) into segments of up to ``target_rows`` events.

    Also moves the write-ahead tail into segments. Positions, versions and contents are unchanged."""
    with store._write_lock():
        store.purge_retired()
        view = store._refresh()
        if view.tail.rows:
            store._write_segments(view, view.tail.frame.clear())
            view = store._refresh()
        manifest = view.manifest
        by_date: dict[str, list[Any]] = {}
        for seg in manifest.segments:
            by_date.setdefault(seg.event_date, []).append(seg)
        groups: list[list[Any]] = []
        for segs in by_date.values():
            current: list[Any] = []
            rows = 0
            for seg in sorted(segs, key=lambda s: s.first_position):
                if current and rows + seg.rows > target_rows:
                    groups.append(current)
                    current, rows = [], 0
                current.append(seg)
                rows += seg.rows
            if current:
                groups.append(current)
        merge = [g for g in groups if len(g) > 1]
        if not merge:
            return CompactReport(len(manifest.segments), len(manifest.segments), 0, [])
        written_all = []
        removed: list[str] = []
        for group in merge:
            frame = (
                pl.concat([_read_verified(store.segments_dir / s.path) for s in group])
                .cast(POLARS_SCHEMA)  # type: ignore[arg-type]
                .sort("global_position")
            )
            written_all.extend(write_segments(frame, store.segments_dir, store.staging_dir))
            removed.extend(s.path for s in group)
        with store.index.writing() as con:
            store.index.add_segments(
                con,
                [w.info for w in written_all],
                [w.granules for w in written_all],
            )
        new = store._store_manifest(manifest, added=[w.info for w in written_all], removed=removed, tail=None)
        with store.index.writing() as con:
            store.index.remove_segments(con, removed)
        # The table drops the replaced files in the same Delta commit that adds their replacement, and
        # only then are they moved out: a reader of any table version sees every event exactly once.
        store.publish_segments(new)
        store.retire(removed)
        return CompactReport(
            len(manifest.segments), len(new.segments), sum(w.info.rows for w in written_all), removed
        )


@dataclass
class ReindexReport:
    segments: int
    events: int
    rebuilt_manifest: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reindex(store: EventStore) -> ReindexReport:
    """Rebuild the index from the segment files alone (and the manifest too when it is missing or
    unreadable); the new index replaces the old one atomically."""
    with store._write_lock():
        rebuilt = False
        try:
            manifest = manifest_io.load(store.manifest_path)
        except StoreError:
            manifest = None
        if manifest is None:
            manifest = store.rebuild_manifest_from_files()
            _check_contiguous(manifest)
            manifest_io.store(store.manifest_path, manifest)
            rebuilt = True
        fresh = store.index.path.with_name(f".{store.index.path.name}.rebuild.{os.getpid()}")
        for leftover in (fresh, Path(f"{fresh}.wal")):
            leftover.unlink(missing_ok=True)
        index = EventIndex(fresh)
        try:
            with index.writing() as con:
                for seg in manifest.segments:
                    path = store.segments_dir / seg.path
                    frame = _read_verified(path).cast(POLARS_SCHEMA)  # type: ignore[arg-type]
                    index.add_segments(con, [seg], [granules(frame, seg.path, row_group_starts(path))])
        finally:
            index.close()
        from settler_pipeline.store.locks import file_lock

        with file_lock(store.index.lock_path):
            os.replace(fresh, store.index.path)
            Path(f"{store.index.path}.wal").unlink(missing_ok=True)
        store._view = None
        return ReindexReport(len(manifest.segments), sum(s.rows for s in manifest.segments), rebuilt)


def _read_verified(path: Path) -> pl.DataFrame:
    verify_file(path)
    return pl.read_parquet(path)


def _check_contiguous(manifest: Manifest) -> None:
    covered = sum(s.rows for s in manifest.segments)
    lost = sum(
        min(last, manifest.segments_head) - first + 1
        for first, last in manifest.lost
        if first <= manifest.segments_head
    )
    if covered + lost != manifest.segments_head:
        raise StoreError(
            f"segment files hold {covered} events but positions reach {manifest.segments_head}",
            hint="segments are missing or duplicated; restore them from a backup, then reindex",
        )


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


def repair(store: EventStore) -> RepairReport:
    """Do what can be done for a damaged log, keeping every intact event and never reusing a position:

    * a commit point older than the segment files (an old ``manifest.json`` put back) is rebuilt from
      the files when they hold contiguous positions;
    * a write-ahead file with damaged records is moved to the quarantine folder and replaced by one
      holding its intact records; the positions the damage held are recorded as lost;
    * acknowledged positions that nothing holds (a truncated or deleted write-ahead file) are recorded
      as lost, so they are never handed out again;
    * files the commit point does not name move to the quarantine folder;
    * the index is rebuilt when it disagrees.

    Segments whose bytes changed cannot be repaired here: they are reported (restore them from a
    backup). Run ``verify`` afterwards."""
    report = RepairReport()
    with store.write_lock():
        view = store.current_view()
        if _commit_point_behind(store, view):
            try:
                rebuilt = store.rebuild_manifest_from_files()
                _check_contiguous(rebuilt)
            except StoreError as exc:
                report.unresolved.append(f"the commit point is older than the segment files: {exc}")
            else:
                manifest_io.store(store.manifest_path, rebuilt)
                report.actions.append(
                    f"rebuilt manifest.json from {len(rebuilt.segments)} segment files "
                    f"(positions up to {rebuilt.segments_head})"
                )
                store.forget_view()
                view = store.current_view()
        lost = _repair_tail(store, view, report)
        if lost:
            manifest = replace(
                view.manifest, generation=view.manifest.generation + 1, lost=(*view.manifest.lost, *lost)
            )
            manifest_io.store(store.manifest_path, manifest)
            report.lost = lost
            report.actions.append(
                "recorded lost positions " + ", ".join(f"{a}..{b}" for a, b in lost) + " (never reused)"
            )
            store.forget_view()
            view = store.current_view()
        write_head(store.head_path, max(view.head, view.recorded_head or 0))
        strays = store.unknown_files(view)
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
    if not report.unresolved and _index_disagreements(store, store.current_view().manifest):
        reindex(store)
        report.actions.append("rebuilt the index from the segment files")
    return report


def _commit_point_behind(store: EventStore, view: LogView) -> bool:
    """True when segment files hold positions past the commit point's, or it names missing files."""
    named = {s.path for s in view.manifest.segments}
    for path in list_segment_files(store.segments_dir):
        match = SEGMENT_NAME.match(path.name)
        relative = path.relative_to(store.segments_dir).as_posix()
        if match and relative not in named and int(match.group(2)) > view.manifest.segments_head:
            return True
    return any(not (store.segments_dir / p).exists() for p in named)


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


def stats(store: EventStore) -> dict[str, Any]:
    """Size and shape of the log, for people and monitoring (a damaged log is described, not refused)."""
    view = store.current_view()
    manifest = view.manifest
    live = sorted(s.path for s in manifest.segments)
    by_type = store.index.query(
        "SELECT event_type, sum(events)::BIGINT FROM idx.type_counts "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[])) GROUP BY 1 ORDER BY 1",
        [live],
    )
    counts = {t: int(n) for t, n in by_type}
    if view.tail.rows:
        for t, n in view.tail.frame.group_by("event_type").len().iter_rows():
            counts[t] = counts.get(t, 0) + int(n)
    tenants = store.index.query(
        "SELECT count(DISTINCT tenant_id) FROM idx.type_counts "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
        [live],
    )[0][0]
    streams = store.index.query(
        "SELECT count(DISTINCT aggregate_id) FROM idx.stream_granules "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
        [live],
    )[0][0]

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    return {
        "data_dir": str(store.data_dir),
        "head_position": view.head,
        "recorded_head": view.recorded_head,
        "damaged": list(view.damage),
        "events": view.head,
        "segments": len(manifest.segments),
        "segment_bytes": sum(s.size_bytes for s in manifest.segments),
        "wal_events": view.tail.rows,
        "wal_bytes": view.wal_valid_bytes,
        "index_bytes": size(store.index.path),
        "snapshot_bytes": size(store.snapshots.path),
        "streams_in_segments": int(streams or 0),
        "tenants_in_segments": int(tenants or 0),
        "events_by_type": counts,
        "manifest_generation": manifest.generation,
        "published_position": manifest.published_head,
        "table_uri": store.table_uri,
        "last_commit_at": (
            view.tail.last_created_at.isoformat() if view.tail.last_created_at else manifest.last_created_at
        ),
    }
