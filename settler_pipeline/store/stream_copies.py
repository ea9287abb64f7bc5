"""Stream copies: a private, derived copy of a segment's events ordered by stream, so that loading a
stream reads one small row group instead of one row group per commit that touched it.

Segments keep global position order (the published table, full reads and projections scan them in
that order without sorting). When a segment gathers many commits (the write-ahead tail flushed into
segments, or a compaction), a stream's events are spread over the whole file: a stream of 100 events
appended 5 at a time sits in 20 row groups, and loading it decodes all 20. Its copy holds the same
rows grouped by stream (each stream's rows in version order) in row groups of :data:`ROW_GROUP_SIZE`, and
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from settler_pipeline.store.index import stream_copy_rows
from settler_pipeline.store.schema import COLUMNS
from settler_pipeline.store.segments import (
    Chunk,
    WrittenSegment,
    place_parquet,
)

FOLDER = "streams"  # under the log's root, beside ``segments/``
DAMAGED_FIX = "run `settler log reindex` (stream copies are derived: loads then read the segments)"
# A stream's events of one segment are then in one small row group. Decoding a row group costs per
# column and per row: 512 rows without dictionary pages decode in ~0.19 ms where 1,024
# dictionary-encoded rows took ~0.26 ms. A group ends at the first stream boundary after
# each multiple of ROW_GROUP_SIZE rows: a stream is split over two groups only where a multiple of
# MAX_GROUP_ROWS falls inside it (with fixed groups of 512, a 100-event stream was for one load in 5).
# Measured against fixed groups of 512 on 100-event streams: a load's read and slice ~0.34 ms of CPU
# instead of ~0.42, for ~100 ms more CPU writing a 200k-event copy (2.5x the row groups).
ROW_GROUP_SIZE = 256
MAX_GROUP_ROWS = 8_192


@dataclass(frozen=True)
class WrittenCopy:
    """A copy just written: the positions of its segment and its index rows (segment path unset)."""

    first_position: int
    last_position: int
    rows: pl.DataFrame


def write_copies(chunks: Sequence[Chunk], copies_dir: Path, staging_dir: Path) -> list[WrittenCopy]:
    """Write the stream copy of each segment to be written from ``chunks`` (see
    :func:`~settler_pipeline.store.segments.split`); files are durable when this returns."""

    def write(chunk: Chunk) -> WrittenCopy:
        return _write_one(chunk, copies_dir, staging_dir)

    if len(chunks) <= 1:
        return [write(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=min(len(chunks), os.cpu_count() or 1)) as pool:
        return list(pool.map(write, chunks))


def index_rows(copies: Sequence[WrittenCopy], segments: Sequence[WrittenSegment]) -> list[pl.DataFrame]:
    """The ``idx.stream_copies`` rows of ``copies``, each naming its segment among ``segments``."""
    paths = {(s.info.first_position, s.info.last_position): s.info.path for s in segments}
    return [
        c.rows.with_columns(pl.lit(paths[(c.first_position, c.last_position)]).alias("segment_path"))
        for c in copies
    ]


def _write_one(chunk: Chunk, copies_dir: Path, staging_dir: Path) -> WrittenCopy:
    event_date, frame = chunk
    first, last = int(frame["global_position"][0]), int(frame["global_position"][-1])
    # a stream load reads envelope columns only: the typed payload columns stay in the segment
    # Grouped by stream: a stable sort on the stream id's hash keeps each stream's rows in position
    # (so version) order and costs ~20 ms per 200k rows where sorting by the id text took ~70-100 ms.
    # Streams whose ids share a hash interleave; readers check that a stream's run is contiguous.
    clustered = frame.select(COLUMNS).sort(pl.col("aggregate_id").hash(), maintain_order=True)
    # no statistics: the index, not the footer, says where a stream is
    starts = group_starts(clustered["aggregate_id"])
    relative, _ = place_parquet(
        clustered,
        (first, last),
        event_date,
        copies_dir,
        staging_dir,
        kind="copy",
        statistics=False,
        # LZ4: a row group of a copy decodes in ~0.2-0.3 ms instead of zstd's ~0.8 ms (a stream
        # load's largest part) and writes faster; the copy is ~2x bigger on disk than with zstd
        compression="lz4",
        dictionary=False,
        row_groups=starts,
    )
    return WrittenCopy(first, last, stream_copy_rows(clustered, "", relative, starts))


def group_starts(ids: pl.Series) -> list[int]:
    """The first row of each row group of a copy whose stream ids (grouped by stream) are ``ids``: a
    group ends where the first stream to reach each multiple of :data:`ROW_GROUP_SIZE` rows ends, and
    at every multiple of :data:`MAX_GROUP_ROWS` rows, so that a long stream's groups stay small."""
    rows = len(ids)
    runs = (ids != ids.shift(1)).fill_null(value=True).arg_true().to_numpy()  # each stream's first row
    ends = np.append(runs[1:], rows)
    cuts = ends[np.searchsorted(ends, np.arange(ROW_GROUP_SIZE, rows, ROW_GROUP_SIZE))]
    cuts = np.union1d(cuts, np.arange(MAX_GROUP_ROWS, rows, MAX_GROUP_ROWS))
    return [0, *(int(c) for c in cuts if c < rows)]


def retire(copies_dir: Path, retired_dir: Path, relatives: Sequence[str]) -> None:
    """Move the copies of replaced segments out of the way (deleted with retired segments later)."""
    for relative in relatives:
        source = copies_dir / relative
        target = retired_dir / FOLDER / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            os.replace(source, target)
            os.utime(target)
