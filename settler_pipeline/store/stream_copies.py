"""Stream copies: a private, derived copy of a segment's events ordered by stream, so that loading a
stream reads one small row group instead of one row group per commit that touched it.

Segments keep global position order (the published table, full reads and projections scan them in
that order without sorting). When a segment gathers many commits (the write-ahead tail flushed into
segments, or a compaction), a stream's events are spread over the whole file: a stream of 100 events
appended 5 at a time sits in 20 row groups, and loading it decodes all 20. Its copy holds the same
rows sorted by ``(aggregate_id, aggregate_version)`` in row groups of :data:`ROW_GROUP_SIZE`, and
``idx.stream_copies`` names, per stream, the copy row groups that hold it.

A copy is a clustered index, not data: it is written and fsynced before the index rows that name it,
which are written before the manifest that commits its segment; readers use it only for live
segments the index has copy rows for, and fall back to the segment's own row groups otherwise.
``reindex`` rebuilds the index without copy rows (reads then use the segments); a copy is retired with
its segment. Its file name carries its own checksum, verified on first read like a segment's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from settler_pipeline.files import replace_durably
from settler_pipeline.store.index import stream_copy_rows
from settler_pipeline.store.schema import COLUMNS
from settler_pipeline.store.segments import WrittenSegment, file_sha256, mark_verified, row_group_starts

FOLDER = "streams"  # under the log's root, beside ``segments/``
ROW_GROUP_SIZE = 1_024  # a stream's events of one segment are then in one or two small row groups


def write_copies(
    written: Sequence[WrittenSegment], copies_dir: Path, staging_dir: Path
) -> list[pl.DataFrame]:
    """Write the stream copy of each segment in ``written``; returns their ``idx.stream_copies`` rows.
    Files are durable when this returns."""

    def write(segment: WrittenSegment) -> pl.DataFrame:
        return _write_one(segment, copies_dir, staging_dir)

    if len(written) <= 1:
        return [write(w) for w in written]
    with ThreadPoolExecutor(max_workers=min(len(written), os.cpu_count() or 1)) as pool:
        return list(pool.map(write, written))


def _write_one(segment: WrittenSegment, copies_dir: Path, staging_dir: Path) -> pl.DataFrame:
    info = segment.info
    # a stream load reads envelope columns only: the typed payload columns stay in the segment
    clustered = segment.frame.select(COLUMNS).sort("aggregate_id", "aggregate_version")
    staging = staging_dir / f"copy-{info.first_position:012d}-{info.last_position:012d}.{os.getpid()}.parquet"
    clustered.write_parquet(
        staging, compression="zstd", compression_level=1, statistics=True, row_group_size=ROW_GROUP_SIZE
    )
    sha = file_sha256(staging)
    name = f"seg-{info.first_position:012d}-{info.last_position:012d}-{sha[:32]}.parquet"
    relative = f"event_date={info.event_date}/{name}"
    target = copies_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_durably(staging, target)
    mark_verified(target)  # hashed just above, before the rename
    return stream_copy_rows(clustered, info.path, relative, row_group_starts(target))


def retire(copies_dir: Path, retired_dir: Path, relatives: Sequence[str]) -> None:
    """Move the copies of replaced segments out of the way (deleted with retired segments later)."""
    for relative in relatives:
        source = copies_dir / relative
        target = retired_dir / FOLDER / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            os.replace(source, target)
            os.utime(target)
