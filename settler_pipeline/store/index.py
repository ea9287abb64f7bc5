"""The DuckDB index of the log: derived from the segments, rebuildable at any time.

It is coarse on purpose. Instead of one row (or ART entry) per event, which makes bulk appends pay
microseconds per event, it keeps one row per *granule*, a Parquet row group of a segment, per key:

* ``row_groups``: position, event-id and commit-time ranges of every row group (id and time lookups);
* ``stream_granules``: which row groups hold which stream's events, with the version range;
* ``correlation_granules`` / ``causation_granules``: which row groups hold a correlation or cause;
* ``segments``: every committed segment with its checksum; ``type_counts``: events per tenant and type;
* ``named_ids``: one row per event whose id is not time-ordered (see ``named_ids.py``).

A point read asks the index for granules and then decodes only those row groups. Rows are added before
the manifest that commits their segment (see ``event_store.py``), so the index always covers the
committed segments; rows of segments the manifest does not name are ignored by readers and removed by
recovery.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import polars as pl

from settler_pipeline.store.database import DuckDBFile
from settler_pipeline.store.manifest import SegmentInfo

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS idx.segments(
    path VARCHAR, event_date DATE, first_position BIGINT, last_position BIGINT, row_count BIGINT,
    size_bytes BIGINT, sha256 VARCHAR, min_created_at TIMESTAMPTZ, max_created_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS idx.row_groups(
    segment_path VARCHAR, row_group INTEGER, rows BIGINT, min_position BIGINT, max_position BIGINT,
    min_event_id UUID, max_event_id UUID, min_created_at TIMESTAMPTZ, max_created_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS idx.stream_granules(
    segment_path VARCHAR, row_group INTEGER, aggregate_id UUID, aggregate_type VARCHAR,
    min_version BIGINT, max_version BIGINT, events BIGINT, tenant_id UUID);
CREATE TABLE IF NOT EXISTS idx.correlation_granules(
    segment_path VARCHAR, row_group INTEGER, correlation_id UUID, events BIGINT);
CREATE TABLE IF NOT EXISTS idx.causation_granules(
    segment_path VARCHAR, row_group INTEGER, causation_id UUID, events BIGINT);
CREATE TABLE IF NOT EXISTS idx.type_counts(
    segment_path VARCHAR, tenant_id UUID, event_type VARCHAR, events BIGINT);
CREATE TABLE IF NOT EXISTS idx.named_ids(segment_path VARCHAR, row_group INTEGER, event_id UUID);
CREATE TABLE IF NOT EXISTS idx.stream_copies(
    segment_path VARCHAR, copy_path VARCHAR, row_group INTEGER, aggregate_id UUID, aggregate_type VARCHAR,
    min_version BIGINT, max_version BIGINT);
"""
COPY_TABLE = "stream_copies"  # rows of stream copies (see ``stream_copies.py``); not rebuilt by reindex

TABLES = (
    "row_groups",
    "stream_granules",
    "correlation_granules",
    "causation_granules",
    "type_counts",
    "named_ids",
)
UUID_COLUMNS = {
    "aggregate_id",
    "correlation_id",
    "causation_id",
    "tenant_id",
    "min_event_id",
    "max_event_id",
    "event_id",
}


def granules(
    frame: pl.DataFrame, segment_path: str, row_group_starts: Sequence[int]
) -> dict[str, pl.DataFrame]:
    """The index rows of one segment: ``frame`` holds its events in file order and ``row_group_starts``
    the first row of each Parquet row group (as written, read back from the footer)."""
    f = _with_row_group(frame, row_group_starts)
    path = pl.lit(segment_path).alias("segment_path")
    # A key column holding one value throughout (a run's events: one stream, tenant and correlation)
    # is taken as that value per group instead of hashed on every row: the same rows, grouped by the
    # row group alone (a third of the index rows' CPU on a run's 250k-event batch).
    one = _single_valued(f, ("aggregate_id", "aggregate_type", "tenant_id", "correlation_id"))

    def by(*keys: str) -> tuple[list[str], list[pl.Expr]]:
        return [k for k in keys if k not in one], [pl.col(k).first() for k in keys if k in one]

    stream_keys, stream_same = by("row_group", "aggregate_id", "aggregate_type")
    correlation_keys, correlation_same = by("row_group", "correlation_id")
    type_keys, type_same = by("tenant_id", "event_type")
    return {
        "row_groups": f.group_by("row_group")
        .agg(
            pl.len().cast(pl.Int64).alias("rows"),
            pl.col("global_position").min().alias("min_position"),
            pl.col("global_position").max().alias("max_position"),
            pl.col("event_id").min().alias("min_event_id"),
            pl.col("event_id").max().alias("max_event_id"),
            pl.col("created_at").min().alias("min_created_at"),
            pl.col("created_at").max().alias("max_created_at"),
        )
        .select(path, pl.all()),
        "stream_granules": f.group_by(stream_keys)
        .agg(
            *stream_same,
            pl.col("aggregate_version").min().alias("min_version"),
            pl.col("aggregate_version").max().alias("max_version"),
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("tenant_id").first().alias("tenant_id"),
        )
        .select(
            path,
            "row_group",
            "aggregate_id",
            "aggregate_type",
            "min_version",
            "max_version",
            "events",
            "tenant_id",
        ),
        "correlation_granules": f.group_by(correlation_keys)
        .agg(*correlation_same, pl.len().cast(pl.Int64).alias("events"))
        .select(path, "row_group", "correlation_id", "events"),
        "causation_granules": f.filter(pl.col("causation_id").is_not_null())
        .group_by("row_group", "causation_id")
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .select(path, pl.all()),
        "type_counts": f.group_by(type_keys)
        .agg(*type_same, pl.len().cast(pl.Int64).alias("events"))
        .select(path, "tenant_id", "event_type", "events"),
        "named_ids": named_rows(f, segment_path, row_group_starts),
    }


def _single_valued(frame: pl.DataFrame, columns: Sequence[str]) -> set[str]:
    """The ``columns`` of ``frame`` that hold one non-null value on every row."""
    if frame.height == 0:
        return set()
    same = frame.select(
        (pl.col(c).null_count() == 0) & (pl.col(c) == pl.col(c).first()).all() for c in columns
    ).row(0)
    return {c for c, flag in zip(columns, same, strict=True) if flag}


def named_rows(frame: pl.DataFrame, segment_path: str, row_group_starts: Sequence[int]) -> pl.DataFrame:
    """``named_ids`` rows of one segment (``frame`` holds at least its ``event_id`` column in file
    order): one per id that is not time-ordered (not UUIDv7), for exact idempotency checks."""
    f = frame if "row_group" in frame.columns else _with_row_group(frame, row_group_starts)
    return f.filter(pl.col("event_id").str.slice(14, 1) != "7").select(
        pl.lit(segment_path).alias("segment_path"), "row_group", "event_id"
    )


def stream_copy_rows(
    clustered: pl.DataFrame, segment_path: str, copy_path: str, row_group_starts: Sequence[int]
) -> pl.DataFrame:
    """``stream_copies`` rows of one stream copy (``clustered``: its rows in file order)."""
    f = _with_row_group(
        clustered.select("aggregate_id", "aggregate_type", "aggregate_version"), row_group_starts
    )
    return (
        f.group_by("row_group", "aggregate_id", "aggregate_type")
        .agg(
            pl.col("aggregate_version").min().alias("min_version"),
            pl.col("aggregate_version").max().alias("max_version"),
        )
        .select(pl.lit(segment_path).alias("segment_path"), pl.lit(copy_path).alias("copy_path"), pl.all())
    )


def _with_row_group(frame: pl.DataFrame, row_group_starts: Sequence[int]) -> pl.DataFrame:
    starts = list(row_group_starts)
    size = starts[1] if len(starts) > 1 else frame.height
    if (
        size
        and starts == list(range(0, frame.height, size))[: len(starts)]
        and len(starts) * size >= frame.height
    ):
        # row groups of one size (as the writers make them): the row group is the row's quotient
        row_group = (pl.int_range(pl.len(), dtype=pl.Int64) // size).cast(pl.Int32)
        return frame.with_columns(row_group.alias("row_group"))
    at = pl.Series(starts, dtype=pl.Int64)
    rows = pl.int_range(frame.height, dtype=pl.Int64, eager=True)
    return frame.with_columns((at.search_sorted(rows, side="right") - 1).cast(pl.Int32).alias("row_group"))


class EventIndex(DuckDBFile):
    """The index database file of one log; see the module docstring."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        super().__init__(path, SCHEMA_SQL, what="event index", read_only=read_only)

    @staticmethod
    def add_segments(
        con: duckdb.DuckDBPyConnection, infos: Sequence[SegmentInfo], rows: Sequence[dict[str, pl.DataFrame]]
    ) -> None:
        """Record segments and their granules (inside a :meth:`writing` block)."""
        seg = pl.DataFrame(
            {
                "path": [i.path for i in infos],
                "event_date": [i.event_date for i in infos],
                "first_position": [i.first_position for i in infos],
                "last_position": [i.last_position for i in infos],
                "row_count": [i.rows for i in infos],
                "size_bytes": [i.size_bytes for i in infos],
                "sha256": [i.sha256 for i in infos],
                "min_created_at": [i.min_created_at for i in infos],
                "max_created_at": [i.max_created_at for i in infos],
            }
        )
        _insert(
            con,
            "segments",
            seg,
            casts={"event_date": "DATE", "min_created_at": "TIMESTAMPTZ", "max_created_at": "TIMESTAMPTZ"},
        )
        for table in TABLES:
            parts = [r[table] for r in rows if r[table].height]
            if parts:
                _insert(con, table, pl.concat(parts), casts={c: "UUID" for c in UUID_COLUMNS})

    @staticmethod
    def add_stream_copies(con: duckdb.DuckDBPyConnection, rows: Sequence[pl.DataFrame]) -> None:
        """Record the rows of stream copies (inside a :meth:`writing` block)."""
        parts = [r for r in rows if r.height]
        if parts:
            _insert(con, COPY_TABLE, pl.concat(parts), casts={"aggregate_id": "UUID"})

    @staticmethod
    def copies_of(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> list[str]:
        """The stream copies of the segments ``paths``."""
        rows = con.execute(
            "SELECT DISTINCT copy_path FROM idx.stream_copies "
            "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
            [list(paths)],
        ).fetchall()
        return sorted(row[0] for row in rows)

    @staticmethod
    def add_named_ids(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
        """Record ``named_ids`` rows (inside a :meth:`writing` block)."""
        if rows.height:
            _insert(con, "named_ids", rows, casts={"event_id": "UUID"})

    def has_table(self, name: str) -> bool:
        """Whether the index database holds table ``name`` (older indexes lack newer tables)."""
        found = self.query(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'idx' AND table_name = $1", [name]
        )
        return bool(found[0][0])

    @staticmethod
    def remove_segments(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> None:
        """Forget segments (replaced by compaction, or never committed) and their granules."""
        if not paths:
            return
        for table in (*TABLES, COPY_TABLE):
            # table names are this module's constants, never caller input
            con.execute(
                f"DELETE FROM idx.{table} WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",  # noqa: S608
                [list(paths)],
            )
        con.execute("DELETE FROM idx.segments WHERE path IN (SELECT unnest($1::VARCHAR[]))", [list(paths)])

    @staticmethod
    def indexed_paths(con: duckdb.DuckDBPyConnection) -> set[str]:
        """Paths of every segment the index holds rows for."""
        return {row[0] for row in con.execute("SELECT path FROM idx.segments").fetchall()}


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, *, casts: dict[str, str]
) -> None:
    """Insert a frame into ``idx.<table>`` by column name (``table`` is one of this module's constants)."""
    columns = ", ".join(f"{c}::{casts[c]} AS {c}" if c in casts else c for c in frame.columns)
    con.register("new_rows", frame)
    try:
        con.execute(f"INSERT INTO idx.{table} BY NAME SELECT {columns} FROM new_rows")  # noqa: S608
    finally:
        con.unregister("new_rows")
