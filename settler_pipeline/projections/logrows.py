"""Read-model rows that are read from the log's own files instead of being copied into the read model.

Nine events in ten of a run's log are ``RecordMatched``, and each is one row of
``reconciliation_matches`` that never changes: its columns are the event's typed payload columns. So
the read model does not write those rows. Every update publishes the published log's files (the Delta
table's current files, no copy: hard links) as a generation of their own, ``read_models/events``
(which the analysts' ``events`` view also reads), *before* the read models; a generation of the read
model records the position ``P`` up to which it reads those files and which attempt of each run is
current. A reader takes the typed ``RecordMatched`` rows at positions ``<= P`` of each run's current
attempt from the files, and every other row (proposals, manual matches, events at positions after
``P`` or stored without typed columns) from the read model's parts. Hard links keep the files readable
after compaction retires them from the log, for as long as a generation names them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain.registry import default_registry
from settler_pipeline.projections.batch import TS, served_filter
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.parts import RUN
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.payloads import SEGMENT_SCHEMA, TYPED

EVENTS: Final = "events"  # read_models/events: the published log's files, for the analysts' view
# The filter files of a generation: runs past their first attempt (reconciliation_id, attempt) and one
# row, the position P. Named by generation, never by a fixed name: DuckDB expands a view's glob through
# the generation symlink and opens the files later, so after a swap a fixed name would open the next
# generation's file with the previous one's metadata. A unique name fails the open instead, and a
# query run again reads one whole generation.
ATTEMPTS: Final = "log_attempts"
POSITION: Final = "log_position"


def filter_file(directory: Path, stem: str, generation: int) -> Path:
    """Generation ``generation``'s filter file ``stem`` in ``directory`` (the fixed name of a
    generation written before filter files were named by generation, if that is the one there)."""
    named = directory / f"{stem}-g{generation:06d}.parquet"
    legacy = directory / f"{stem}.parquet"
    return legacy if not named.exists() and legacy.exists() else named


# reconciliation_matches column -> expression over a log row (a RecordMatched event)
MATCH_COLUMNS: Final[dict[str, pl.Expr]] = {
    "reconciliation_id": pl.col("aggregate_id"),
    "match_id": pl.col("match_id"),
    "tenant_id": pl.col("tenant_id"),
    "attempt": pl.col("attempt"),
    "rule": pl.col("rule"),
    "match_type": pl.col("match_type"),
    "status": pl.lit("matched"),
    "confidence": pl.col("confidence"),
    "source_ids": pl.col("source_ids"),
    "target_ids": pl.col("target_ids"),
    "amount": pl.col("amount"),
    "target_amount": pl.col("target_amount"),
    "amount_difference": pl.col("amount_difference"),
    "currency": pl.col("currency"),
    "matched_at": pl.col("timestamp"),
    "reviewed_at": pl.lit(None, TS),
    "reviewed_by": pl.lit(None, pl.String),
    "_position": pl.col("global_position"),
}
# the same in SQL over read_parquet(...) AS l (casts come from the read model's columns)
MATCH_SQL: Final[dict[str, str]] = {
    "reconciliation_id": "l.aggregate_id",
    "status": "'matched'",
    "matched_at": "l.timestamp",
    "reviewed_at": "NULL",
    "reviewed_by": "NULL",
}


_listed: dict[Path, list[str]] = {}  # the files listed by the current update (see LogFiles.files)


@dataclass(frozen=True)
class LogFiles:
    """The published log (files under ``segments_dir``), whose rows a read model reads up to
    ``position``: the table's files at any later time hold every position ``1..position`` exactly
    once (and perhaps later ones, which readers leave out)."""

    segments_dir: Path
    position: int

    @classmethod
    def published(cls, store: EventStore, position: int | None = None) -> LogFiles:
        """The published log up to ``position`` if the caller just published, else up to the
        position the table's current version publishes."""
        segments = store.data_dir / "log" / "segments"
        _listed.pop(segments, None)
        return cls(segments, delta_table.published_head(segments) if position is None else position)

    def files(self, *, fresh: bool = False) -> list[str]:
        """The table's current files (paths relative to ``segments_dir``), in order; listed once
        (reading the Delta log costs tens of milliseconds) unless ``fresh``."""
        if fresh or self.segments_dir not in _listed:
            _listed.clear()  # one store per update: a small cache
            _listed[self.segments_dir] = _current_files(self.segments_dir)
        return list(_listed[self.segments_dir])

    def link(self, directory: Path) -> list[str]:
        """Hard-link the table's current files into ``directory`` (by file name; a symbolic link where
        the file system refuses hard links); returns their paths relative to ``segments_dir``. A file
        that compaction retired meanwhile makes it list the files again."""
        for attempt in range(3):
            names = self.files(fresh=attempt > 0)
            try:
                _link(self.segments_dir, names, directory)
                return names
            except FileNotFoundError:
                if attempt == 2:
                    raise
                shutil.rmtree(directory, ignore_errors=True)
        raise AssertionError("unreachable")


def _current_files(segments_dir: Path) -> list[str]:
    """The table's current files, sorted: the segments of the log's state its newest commit carries
    (every commit Settler makes carries the state, which names exactly the table's files), read from
    that one commit file in about a millisecond; else by replaying the table's transaction log
    (15-40 ms with ``deltalake``)."""
    version = delta_table.newest_version(segments_dir)
    state = None if version is None else delta_table.read_state(segments_dir, version)
    if state is not None:
        return sorted(segment.path for segment in state.segments)
    return sorted(delta_table.current_files(segments_dir))


def _link(source: Path, names: list[str], directory: Path) -> None:
    # One flat directory (segment names are unique across dates): one directory to fsync (when the
    # generation is published), not one per event date.
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = directory / Path(name).name
        try:
            os.link(source / name, target)
        except FileNotFoundError:
            raise
        except OSError:  # another file system: the file itself, by name
            os.symlink((source / name).resolve(strict=True), target)


def publish_events(root: Path, log: LogFiles) -> None:
    """Publish the log's current files as generation ``read_models/events`` (the analysts' ``events``
    view reads them by glob, so its definition never changes); nothing when they did not change."""
    generations = Generations(root, EVENTS)
    current = generations.manifest()
    if current is not None and current.get("files") == log.files():
        return
    generations.clean()
    generation, storage = generations.begin(fresh=True)
    names = log.link(storage.work_dir)
    generations.publish(generation, {"generation": generation, "position": log.position, "files": names})


def logged_filter(position: int) -> pl.Expr:
    """Log rows served as ``reconciliation_matches`` rows: typed ``RecordMatched`` events at their
    current version, at positions up to ``position`` (the rows a chunk reads as sums)."""
    return served_filter(default_registry, position)


def scan_matches(
    files: list[Path], position: int, attempts: pl.DataFrame, stored: pl.LazyFrame | None
) -> pl.LazyFrame:
    """``reconciliation_matches`` rows (stored columns) read from the linked log ``files``: typed
    ``RecordMatched`` events up to ``position`` of each run's current attempt (``attempts``: runs past
    their first attempt), less the positions ``stored`` (a frame of ``_position``) holds."""
    scan = pl.scan_parquet(files, hive_partitioning=False, schema=SEGMENT_SCHEMA, missing_columns="insert")
    rows = scan.filter(logged_filter(position))
    if attempts.height:
        current = attempts.lazy().select(pl.col(RUN).alias("aggregate_id"), pl.col("attempt").alias("_c"))
        rows = rows.join(current, on="aggregate_id", how="left").filter(
            pl.col("_c").is_null() | (pl.col("attempt") >= pl.col("_c"))
        )
    if stored is not None:
        held = stored.select(pl.col("_position").alias("global_position"))
        rows = rows.join(held, on="global_position", how="anti")
    return rows.select(expr.alias(name) for name, expr in MATCH_COLUMNS.items())


def write_filters(directory: Path, generation: int, position: int, attempts: pl.DataFrame) -> list[Path]:
    """Write the files the analysts' view filters the linked log with (see :func:`view_sql`), named by
    ``generation``; returns them (not yet durable: publishing the generation makes them so)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [filter_file(directory, ATTEMPTS, generation), filter_file(directory, POSITION, generation)]
    attempts.select(RUN, pl.col("attempt").cast(pl.Int64)).write_parquet(written[0])
    pl.DataFrame({"position": [position]}, schema={"position": pl.Int64}).write_parquet(written[1])
    return written


def view_sql(directory: str, events: str, columns: dict[str, str]) -> str:
    """A ``SELECT`` of the log rows of the read model published at ``directory`` from the log's files
    published at ``events`` (both as the view names them: our own read models' paths), with
    ``columns``: name -> DuckDB type, in the read model's column order."""
    version = default_registry.current_version(e.RECORD_MATCHED)
    current = "" if version is None else f"AND l.event_version = {int(version)} "
    selected = ", ".join(
        f"CAST({MATCH_SQL.get(name, 'l.' + name)} AS {kind}) AS {name}" for name, kind in columns.items()
    )
    return (
        f"SELECT {selected} FROM read_parquet('{events}/*.parquet', "  # noqa: S608
        "hive_partitioning = false, union_by_name = true) AS l "
        f"LEFT JOIN read_parquet('{directory}/{ATTEMPTS}*.parquet') AS a ON a.{RUN} = l.aggregate_id "
        f"WHERE l.event_type = '{e.RECORD_MATCHED}' AND l.aggregate_type = '{e.AGGREGATE_TYPE}' "
        f"AND l.{TYPED} {current}"
        "AND l.global_position <= "
        f"(SELECT max(position) FROM read_parquet('{directory}/{POSITION}*.parquet')) "
        "AND (a.attempt IS NULL OR l.attempt >= a.attempt) "
        f"AND l.global_position NOT IN (SELECT _position FROM read_parquet('{directory}/part-*.parquet') "
        "WHERE status = 'matched')"
    )
