"""One stream's rows out of the row groups that hold them, as Arrow tables (the parts of a stream load).

A stream copy's row group (see ``stream_copies.py``) is grouped by stream, each stream's rows in
version order, so a stream's rows in it are one run: found with one comparison over the group's
stream ids and sliced (no copy), instead of a filter and a sort over every column. A segment's own
row groups hold many streams in position order and are filtered. The parts of a load (one per file,
plus the write-ahead tail) are then put in position order; a stream's versions rise with its
positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from settler_pipeline.store.schema import EVENT_SCHEMA

# the stored schema as Parquet files and Polars give it back (large strings): parts are cast to it
STORED_SCHEMA = pa.schema(
    [pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type) for f in EVENT_SCHEMA]
)
NO_LIMIT = 2**62  # a version no stream reaches


def stream_part(
    table: pa.Table, aggregate_id: str, aggregate_type: str, low: int, high: int, *, clustered: bool
) -> pa.Table:
    """The rows of ``table`` (row groups of one file) of one stream with versions ``low..high``, in the
    table's order; ``clustered`` says the rows are grouped by stream (a stream copy)."""
    ids = table.column("aggregate_id")
    if not clustered:
        return table.filter(_wanted(table, ids, aggregate_id, aggregate_type, low, high))
    run = _run(ids, aggregate_id)
    if run is None:  # ids of mixed widths, or another stream's id with the same hash in between
        hits = pc.indices_nonzero(pc.equal(ids, pa.scalar(aggregate_id)))
        part = table.take(hits)
    else:
        part = table.slice(*run)
    if not part.num_rows:
        return part
    versions = part.column("aggregate_version").to_numpy()
    one_type = _run(part.column("aggregate_type"), aggregate_type) == (0, part.num_rows)
    if one_type and versions[0] >= low and versions[-1] <= high:
        return part
    return part.filter(_wanted(part, part.column("aggregate_id"), aggregate_id, aggregate_type, low, high))


def _run(column: pa.ChunkedArray[Any], value: str) -> tuple[int, int] | None:
    """``(first row, rows)`` of the one contiguous run of ``value`` in ``column`` (``(0, 0)`` when it
    is absent), found in the column's bytes: a comparison kernel and reading its result back cost
    ~10x more on a small row group. ``None`` when the bytes cannot say (several chunks, nulls,
    values of other widths than ``value``'s, or its rows not contiguous): compare row by row then."""
    needle = value.encode()
    width = len(needle)
    if column.num_chunks != 1 or column.null_count or not width:
        return None
    array: Any = column.chunk(0)  # one Arrow array (the stubs type a chunk as the chunked array)
    if array.type not in (pa.string(), pa.large_string()):
        return None
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64 if array.type == pa.large_string() else np.int32)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    if not (np.diff(offsets) == width).all():
        return None
    start = int(offsets[0])
    data = memoryview(data_buffer)[start : start + width * len(array)].tobytes()
    first = data.find(needle)
    if first < 0:
        return (0, 0)
    last = data.rfind(needle)
    rows = (last - first) // width + 1
    if first % width or last % width or data[first : last + width] != needle * rows:
        return None
    return (first // width, rows)


def _wanted(
    table: pa.Table, ids: pa.ChunkedArray[Any], aggregate_id: str, aggregate_type: str, low: int, high: int
) -> Any:
    versions = table.column("aggregate_version")
    return pc.and_(
        pc.and_(
            pc.equal(ids, pa.scalar(aggregate_id)),
            pc.equal(table.column("aggregate_type"), pa.scalar(aggregate_type)),
        ),
        pc.and_(pc.greater_equal(versions, pa.scalar(low)), pc.less_equal(versions, pa.scalar(high))),
    )


def in_position_order(parts: Sequence[pa.Table]) -> pa.Table:
    """The rows of ``parts`` (each in position order) as one table in position order."""
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return STORED_SCHEMA.empty_table()
    if len(parts) == 1:
        return parts[0]
    parts = [
        p if p.schema == STORED_SCHEMA else p.select(STORED_SCHEMA.names).cast(STORED_SCHEMA) for p in parts
    ]
    ordered = sorted(parts, key=lambda p: p.column("global_position")[0].as_py())
    joined = pa.concat_tables(ordered)
    firsts = [p.column("global_position")[0].as_py() for p in ordered]
    lasts = [p.column("global_position")[-1].as_py() for p in ordered]
    if all(last < first for last, first in zip(lasts, firsts[1:], strict=False)):
        return joined
    # parts whose ranges interleave (segments of a batch that spans several event dates)
    return joined.take(pc.sort_indices(joined, [("global_position", "ascending")]))
