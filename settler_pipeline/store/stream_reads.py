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
    hits = pc.indices_nonzero(pc.equal(ids, pa.scalar(aggregate_id)))
    if len(hits) == 0:
        return table.slice(0, 0)
    first, last = hits[0].as_py(), hits[-1].as_py()
    # contiguous unless another stream's id has the same hash (the copy groups streams by hash)
    part = table.slice(first, len(hits)) if last - first + 1 == len(hits) else table.take(hits)
    versions = part.column("aggregate_version")
    if (
        versions[0].as_py() >= low
        and versions[-1].as_py() <= high
        and pc.count_distinct(part.column("aggregate_type")).as_py() == 1
        and part.column("aggregate_type")[0].as_py() == aggregate_type
    ):
        return part
    return part.filter(_wanted(part, part.column("aggregate_id"), aggregate_id, aggregate_type, low, high))


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
