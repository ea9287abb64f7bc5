"""Immutable Parquet segment files, Hive-partitioned by event date.

A segment is written to a staging name outside the scanned tree, fsynced, and renamed into
``segments/event_date=YYYY-MM-DD/seg-<first>-<last>-<sha256 prefix>.parquet``. The name carries the
checksum of the file's bytes recorded at write time, so ``verify`` can detect a changed file from the
segment alone, and the index can be rebuilt from the files alone. Rows inside a file are in global
position order.

Every read checks a file's bytes against that checksum the first time this process reads it (and again
if the file changes): a damaged segment fails the read with :class:`CorruptionError` naming the file
instead of returning changed events (hashing, on a second core, is paid once per file per process).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from settler_pipeline.errors import CorruptionError
from settler_pipeline.files import removed_on_failure, replace_durably
from settler_pipeline.store.index import granules
from settler_pipeline.store.manifest import SegmentInfo
from settler_pipeline.store.payloads import SEGMENT_SCHEMA, with_payload_columns

SEGMENT_MAX_ROWS = 500_000
ROW_GROUP_SIZE = 8_192  # small enough that loading one stream decodes little, large enough to scan fast
# A bulk batch's segments (one commit, a run's events: its streams are few and long, loaded whole) are
# written in larger row groups: Polars wrote 500,000 run events in 1.3-1.5 s of CPU at 65,536 rows per
# group against 2.4-3.3 s at 8,192 (the list columns' per-group cost), and scans read them faster.
BULK_ROW_GROUP_SIZE = 65_536
SEGMENT_NAME = re.compile(r"^seg-(\d{12})-(\d{12})-([0-9a-f]{32})\.parquet$")
PARTITION_NAME = re.compile(r"^event_date=(\d{4}-\d{2}-\d{2})$")


_VERIFIED: dict[str, tuple[int, int, int]] = {}  # path -> (inode, size, mtime) checked in this process


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


RESTORE = "run `settler log verify`; restore this file from a backup of the data directory"


def verify_file(path: Path, fix: str = RESTORE) -> None:
    """Raise :class:`CorruptionError` naming ``path`` (with ``fix`` as its hint) unless its bytes match
    the checksum in its name (checked once per process per file; ``FileNotFoundError`` if missing)."""
    stamp, key = _stamp(path), str(path)
    if _VERIFIED.get(key) == stamp:
        return
    match = SEGMENT_NAME.match(path.name)
    if match is None or not file_sha256(path).startswith(match.group(3)):
        raise CorruptionError(
            f"segment {path} is damaged: its bytes no longer match the checksum recorded when it was written",
            hint=fix,
        )
    _VERIFIED[key] = stamp


def mark_verified(path: Path) -> None:
    """Record that ``path`` was just hashed (by its writer), so this process does not hash it again."""
    _VERIFIED[str(path)] = _stamp(path)


def verify_files(paths: list[Path]) -> list[Path]:
    """:func:`verify_file` for many files, two at a time. Returns the files that are not there (retired
    by a compaction meanwhile, or missing): the caller decides which it is."""
    unchecked, vanished = [], []
    for path in paths:
        try:
            if _VERIFIED.get(str(path)) != _stamp(path):
                unchecked.append(path)
        except FileNotFoundError:
            vanished.append(path)

    def check(path: Path) -> None:
        try:
            verify_file(path)
        except FileNotFoundError:
            vanished.append(path)

    if len(unchecked) <= 1:
        for path in unchecked:
            check(path)
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(check, unchecked))
    return vanished


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WrittenSegment:
    """A segment just written: its manifest entry, its rows in file order, its row-group starts and
    its index rows (granules)."""

    info: SegmentInfo
    frame: pl.DataFrame
    row_group_starts: list[int]
    granules: dict[str, pl.DataFrame]


Chunk = tuple[str, pl.DataFrame]  # (event date, rows in position order) of one segment to write


def write_segments(
    frame: pl.DataFrame,
    segments_dir: Path,
    staging_dir: Path,
    chunks: list[Chunk] | None = None,
    *,
    derive: Callable[[pl.DataFrame], Callable[[str], object]] | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
) -> list[WrittenSegment]:
    """Write ``frame`` (rows in position order, the event schema) as one segment per event date (per
    :func:`split` chunk: pass ``chunks`` when already split). ``derive(rows)`` (derived files: rollups)
    runs on a thread of its own while each segment is written; what it returns is called there with the
    segment's relative path once the segment is in place. ``row_group_size``: rows per Parquet row
    group (:data:`BULK_ROW_GROUP_SIZE` for a bulk batch).

    Files are durable and renamed into the tree when this returns, but they are part of the log only
    once a manifest naming them is stored. The typed payload columns are written as the frame brings
    them (see :func:`~settler_pipeline.store.payloads.with_payload_columns`)."""
    chunks = chunks if chunks is not None else split(frame)

    def write(item: Chunk) -> WrittenSegment:
        event_date, chunk = item
        # The Parquet encoder keeps one core busy: the rollup is built beside it, and written beside
        # the index rows.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settler-derive") as pool:
            built = pool.submit(derive, chunk) if derive is not None else None
            info = _write_one(chunk, event_date, segments_dir, staging_dir, row_group_size)
            placed = pool.submit(built.result(), info.path) if built is not None else None
            starts = row_group_starts(segments_dir / info.path)
            index_rows = granules(chunk, info.path, starts)
            _ = placed.result() if placed is not None else None
        return WrittenSegment(info, chunk, starts, index_rows)

    if len(chunks) == 1:
        return [write(chunks[0])]
    with ThreadPoolExecutor(max_workers=min(len(chunks), os.cpu_count() or 1)) as pool:
        return list(pool.map(write, chunks))


def split(frame: pl.DataFrame, *, pieces: int = 1) -> list[Chunk]:
    """The segments ``frame`` is written as: one per event date, big ones cut in parts (with the typed
    payload columns the frame brings); a date's part of at least ``pieces`` times
    :data:`BULK_ROW_GROUP_SIZE` rows is cut in at least ``pieces`` parts."""
    frame = with_payload_columns(frame, from_json=False)
    dates = frame["timestamp"].dt.date()
    if dates.n_unique() == 1:
        parts = [(str(dates[0]), frame)]
    else:
        keyed = frame.with_columns(dates.alias("_event_date"))
        parts = [
            (str(key[0]), part.drop("_event_date"))
            for key, part in keyed.partition_by("_event_date", as_dict=True, maintain_order=True).items()
        ]

    # Big parts are split so their files (and index rows) are produced in parallel: the Parquet writer
    # encodes on one core, and bulk appends are bound by it.
    def size(rows: int) -> int:
        if rows < pieces * BULK_ROW_GROUP_SIZE:
            return SEGMENT_MAX_ROWS
        return min(SEGMENT_MAX_ROWS, -(-rows // pieces))

    return [
        (event_date, part.slice(offset, size(part.height)))
        for event_date, part in sorted(parts, key=lambda p: p[0])
        for offset in range(0, part.height, size(part.height))
    ]


def ordered_scans(segments_dir: Path, segments: Sequence[SegmentInfo]) -> list[pl.LazyFrame]:
    """Scans of ``segments`` (in position order of their first events) whose concatenation is in
    position order: runs of segments whose ranges do not interleave are one scan, already in order;
    only segments whose ranges interleave (a batch spanning several event dates is written as one
    segment per date) are sorted, and only among themselves (on 10M run-shaped events, 1.6M rows
    sorted instead of all: a full read with payload fields ~2 s of CPU instead of ~4 s). Every column
    of the segment schema (files written before the typed payload columns read them as null)."""
    groups: list[list[SegmentInfo]] = []
    reach = 0
    for seg in segments:
        if groups and seg.first_position <= reach:
            groups[-1].append(seg)
        else:
            groups.append([seg])
        reach = max(reach, seg.last_position)
    runs: list[tuple[list[SegmentInfo], bool]] = []
    for group in groups:
        if len(group) == 1 and runs and not runs[-1][1]:
            runs[-1][0].extend(group)
        else:
            runs.append((group, len(group) > 1))
    scans = []
    for run, interleaved in runs:
        scan = pl.scan_parquet(
            [segments_dir / s.path for s in run],
            hive_partitioning=False,
            schema=SEGMENT_SCHEMA,
            missing_columns="insert",
        )
        scans.append(scan.sort("global_position") if interleaved else scan)
    return scans


def row_group_starts(path: Path) -> list[int]:
    """The first row of every row group of a Parquet file, from its footer."""
    meta = pq.read_metadata(path)
    starts = [0]
    for i in range(meta.num_row_groups - 1):
        starts.append(starts[-1] + meta.row_group(i).num_rows)
    return starts


def place_parquet(
    frame: pl.DataFrame,
    positions: tuple[int, int],
    event_date: str,
    dest_dir: Path,
    staging_dir: Path,
    *,
    kind: str,
    statistics: bool,
    row_group_size: int = ROW_GROUP_SIZE,
    compression: str = "zstd",
    dictionary: bool = True,
    row_groups: Sequence[int] | None = None,
) -> tuple[str, str]:
    """Write ``frame`` (the events of ``positions``, first and last) durably under ``dest_dir`` as
    ``event_date=<day>/seg-<first>-<last>-<sha>.parquet`` and return that relative path and the file's
    SHA-256: staged under a ``kind``-prefixed name (a segment and its stream copy are written at the
    same time), hashed, then renamed into place, so a reader never sees a partial file and the name
    says what the content is; marked verified (hashed before the rename). Without ``dictionary``,
    ``row_groups`` can give the first row of each row group (of any sizes)."""
    first, last = positions
    staging = staging_dir / f"{kind}-{first:012d}-{last:012d}.{os.getpid()}.parquet"
    with removed_on_failure(staging):
        if dictionary:
            frame.write_parquet(
                staging,
                compression=compression,  # type: ignore[arg-type]
                compression_level=1 if compression == "zstd" else None,
                statistics=statistics,
                row_group_size=row_group_size,
            )
        else:  # Polars always dictionary-encodes what it can; pyarrow's writer can be told not to
            table, cuts = frame.to_arrow(), [*(row_groups or range(0, frame.height, row_group_size))]
            cuts.append(frame.height)
            kw = {"compression": compression, "use_dictionary": False, "write_statistics": statistics}
            with pq.ParquetWriter(staging, table.schema, **kw) as out:  # type: ignore[arg-type]
                for start, end in itertools.pairwise(cuts):
                    out.write_table(table.slice(start, end - start), row_group_size=end - start)
        sha = file_sha256(staging)
    relative = f"event_date={event_date}/seg-{first:012d}-{last:012d}-{sha[:32]}.parquet"
    target = dest_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_durably(staging, target)
    mark_verified(target)
    return relative, sha


def _write_one(
    part: pl.DataFrame, event_date: str, segments_dir: Path, staging_dir: Path, row_group_size: int
) -> SegmentInfo:
    first, last = int(part["global_position"][0]), int(part["global_position"][-1])
    if max(part.n_chunks("all")) > 1:
        # A part cut from several chunks (a bulk batch concatenated behind the write-ahead tail, a
        # run's frames) wrote its list and string columns 1.5-3x slower than one contiguous copy;
        # the copy costs ~0.1 s per 500,000 rows.
        part = part.rechunk()
    relative, sha = place_parquet(
        part,
        (first, last),
        event_date,
        segments_dir,
        staging_dir,
        kind="seg",
        statistics=True,
        row_group_size=row_group_size,
    )
    target = segments_dir / relative
    created = part["created_at"]
    return SegmentInfo(
        path=relative,
        first_position=first,
        last_position=last,
        rows=part.height,
        size_bytes=target.stat().st_size,
        sha256=sha,
        min_created_at=created.min().isoformat(),  # type: ignore[union-attr]
        max_created_at=created.max().isoformat(),  # type: ignore[union-attr]
    )


def describe_file(path: Path, segments_dir: Path) -> SegmentInfo:
    """Rebuild a segment's manifest entry from the file alone (for reindex)."""
    stats = (
        pl.scan_parquet(path)
        .select(
            pl.col("global_position").min().alias("first"),
            pl.col("global_position").max().alias("last"),
            pl.len().alias("rows"),
            pl.col("created_at").min().alias("min_created"),
            pl.col("created_at").max().alias("max_created"),
        )
        .collect()
        .row(0, named=True)
    )
    return SegmentInfo(
        path=path.relative_to(segments_dir).as_posix(),
        first_position=int(stats["first"]),
        last_position=int(stats["last"]),
        rows=int(stats["rows"]),
        size_bytes=path.stat().st_size,
        sha256=file_sha256(path),
        min_created_at=stats["min_created"].isoformat(),
        max_created_at=stats["max_created"].isoformat(),
    )


def list_segment_files(segments_dir: Path) -> list[Path]:
    """Every file under the segments tree that looks like a segment, in name order."""
    if not segments_dir.exists():
        return []
    return sorted(
        path
        for partition in segments_dir.iterdir()
        if partition.is_dir() and PARTITION_NAME.match(partition.name)
        for path in partition.iterdir()
        if SEGMENT_NAME.match(path.name)
    )
