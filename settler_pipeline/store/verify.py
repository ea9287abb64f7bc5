"""`verify`: check the log end to end (see :mod:`settler_pipeline.store.maintenance`); it opens no file for
writing and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable

from settler_pipeline.errors import StoreError
from settler_pipeline.store import rollups, stream_copies
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import EventStore, LogView
from settler_pipeline.store.index import COPY_TABLE, TABLES, granules
from settler_pipeline.store.locks import file_lock
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.schema import POLARS_SCHEMA
from settler_pipeline.store.segments import (
    SEGMENT_NAME,
    file_sha256,
    row_group_starts,
)


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


ATTEMPTS = 3  # checks of a log that writers keep changing, before reporting what the last one found


def verify(store: EventStore) -> VerifyReport:
    """Check the log end to end (see the module docstring); opens no file for writing and changes
    nothing, so it runs on a store opened with ``read_only=True``, and beside working writers: the
    picture of the files (the commit point, the tail, files it does not name) is taken while no writer
    is in the middle of a commit (the readers' shared lock, held for that moment only), and a check
    whose log changed meanwhile (a commit or a compaction) is made again."""
    report = VerifyReport()
    for _ in range(ATTEMPTS):
        report, generation = _verify_once(store)
        if not report.problems or generation is None or _generation(store) == generation:
            return report
    return report


def _generation(store: EventStore) -> int | None:
    try:
        state = store.stored_state()
    except StoreError:
        return None
    return state.generation if state is not None else None


def _verify_once(store: EventStore) -> tuple[VerifyReport, int | None]:
    """One check and the generation of the state it checked."""
    report = VerifyReport()
    # a writer holds the lock for each commit: between commits its files are all named or absent
    with file_lock(store.write_lock_path, shared=True, create=False, timeout_s=store.lock_timeout_s):
        try:
            state = store.stored_state()
            view = store.current_view()
        except StoreError as exc:
            report.problems.append(str(exc))
            return report, None
        if state is None:
            report.problems.append("the commit point (the Delta table's transaction log) is missing")
            return report, None
        report.problems.extend(table_disagreements(store, view))
        strays = store.unknown_files(view)
    manifest = view.manifest
    report.problems.extend(view.damage)
    report.recorded_head = view.recorded_head
    report.lost = list(manifest.lost)
    report.segments = len(manifest.segments)
    report.wal_events = view.tail.rows
    for path in strays:
        report.problems.append(
            f"{path.relative_to(store.root).as_posix()}: not part of the log (a leftover of an interrupted "
            "write, or put there by hand); the next writer moves it to the quarantine folder"
        )
    report.problems.extend(_check_contents(store, view, report))
    return report, manifest.generation


def _check_contents(store: EventStore, view: LogView, report: VerifyReport) -> list[str]:
    """The segments' bytes, the positions, ids and versions they and the tail hold, the index and the
    stream copies; the problems found (counts go into ``report``)."""
    manifest = view.manifest
    problems: list[str] = []
    frames: list[pl.DataFrame] = []
    trusted: list[SegmentInfo] = []
    for seg in manifest.segments:
        if (frame := _check_segment(store, seg, report)) is not None:
            frames.append(frame)
            trusted.append(seg)
    if view.tail.rows:
        frames.append(view.tail.frame.select(_VERIFY_COLUMNS))
    report.head_position = view.head
    if not frames:
        return problems
    events = pl.concat(frames)
    report.events = events.height
    _check_positions(events, view.head, manifest, report)
    # A damaged segment is already reported; its index rows are compared once it is repaired.
    problems.extend(index_disagreements(store, manifest, trusted))
    problems.extend(copy_problems(store, trusted))
    problems.extend(rollups.problems(trusted, store.segments_dir, store.rollups_dir))
    return problems


def table_disagreements(store: EventStore, view: LogView) -> list[str]:
    """Where the Delta table, as ``deltalake`` replays its transaction log, disagrees with the state its
    newest commit carries (a commit file missing from the middle of the log, one written by another
    tool). A directory not yet migrated from ``manifest.json`` has nothing to compare."""
    version = store.state_version
    if version is None:
        return []
    name = f"segments/{delta_table.LOG_FOLDER}"
    problem = delta_table.replay_problem(store.segments_dir)
    if problem is not None:
        return [
            f"{name}: the Delta transaction log cannot be replayed ({problem}); "
            "`settler log repair` rebuilds it (keeping every event)"
        ]
    replayed = DeltaTable(store.table_uri)
    files = delta_table.files_of(replayed, Path(store.table_uri))
    problems = []
    if replayed.version() != version:
        problems.append(
            f"{name}: the table's version is {replayed.version()}, its newest commit file {version}"
        )
    if files != view.live_paths:
        problems.append(
            f"{name}: the table's files differ from the committed state "
            f"({len(files - view.live_paths)} extra, {len(view.live_paths - files)} missing)"
        )
    return problems


def copy_problems(store: EventStore, segments: Sequence[SegmentInfo]) -> list[str]:
    """What is wrong with the stream copies the index names for ``segments`` (see ``stream_copies.py``):
    each must exist, match the checksum in its name and hold its segment's number of rows."""
    if not segments or not store.index.path.exists() or not store.index.has_table(COPY_TABLE):
        return []
    rows = {seg.path: seg.rows for seg in segments}
    named = store.index.query(
        "SELECT DISTINCT segment_path, copy_path FROM idx.stream_copies "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
        [sorted(rows)],
    )
    problems = []
    fix = f"loads of its streams fail until repaired: {stream_copies.DAMAGED_FIX}"
    for segment, copy in sorted(named):
        path = store.copies_dir / copy
        match = SEGMENT_NAME.match(path.name)
        if not path.exists():
            problems.append(f"{stream_copies.FOLDER}/{copy}: stream copy of {segment} is missing; {fix}")
        elif match is None or not file_sha256(path).startswith(match.group(3)):
            problems.append(f"{stream_copies.FOLDER}/{copy}: stream copy of {segment} is damaged; {fix}")
        elif pq.read_metadata(path).num_rows != rows[segment]:
            problems.append(
                f"{stream_copies.FOLDER}/{copy}: stream copy of {segment} does not hold its rows; {fix}"
            )
    return problems


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
        report.problems.append(f"{seg.path}: {frame.height} rows, the commit says {seg.rows}")
    positions = frame["global_position"]
    if positions.len() and (positions.min() != seg.first_position or positions.max() != seg.last_position):
        report.problems.append(f"{seg.path}: positions do not match the committed range")
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


def _expected_granules(store: EventStore, segments: Sequence[SegmentInfo]) -> dict[str, pl.DataFrame]:
    parts: dict[str, list[pl.DataFrame]] = {t: [] for t in TABLES}
    for seg in segments:
        path = store.segments_dir / seg.path
        if not path.exists():
            continue
        frame = pl.read_parquet(path, columns=list(POLARS_SCHEMA)).cast(POLARS_SCHEMA)  # type: ignore[arg-type]
        for table, rows in granules(frame, seg.path, row_group_starts(path)).items():
            parts[table].append(rows)
    return {t: pl.concat(p) if p else pl.DataFrame() for t, p in parts.items()}


def index_disagreements(
    store: EventStore, manifest: Manifest, trusted: list[SegmentInfo] | None = None
) -> list[str]:
    """Where the index disagrees with the segments it indexes. Only ``trusted`` segments (by default
    all the manifest names) are read: a segment whose checksum failed may not even parse."""
    problems: list[str] = []
    if not store.index.path.exists():
        return ["the index database is missing (run `settler log reindex`)"]
    segments = list(manifest.segments) if trusted is None else trusted
    expected = _expected_granules(store, segments)
    live = sorted(s.path for s in segments)
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
