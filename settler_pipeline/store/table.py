"""The published log: a Delta Lake table over the committed segment files, for every other engine.

The table's root is ``log/segments`` (Hive-partitioned by ``event_date``, the UTC date of the event's
own time) and its transaction log is ``log/segments/_delta_log``. The table's files are the segment
files themselves (no copy): publishing commits ``add`` actions for segments the manifest gained and
``remove`` actions for segments compaction replaced, in one Delta commit, so a reader of any table
version sees each event exactly once, never a file twice, never a file being written. Every commit
records the position it publishes up to (``settler.head_position`` in the commit's metadata), and
positions ``1..published`` are exactly the table's rows.

Spark, Trino, DuckDB's delta extension, ``deltalake.DeltaTable`` and ``pl.scan_delta`` read it; an engine
without Delta support reads ``DeltaTable(uri).file_uris()`` as plain Parquet (with union-by-name: files
written before the typed payload columns lack them). The typed payload columns of
:mod:`~settler_pipeline.store.payloads` are part of the table's schema; a table published before them
gains them by schema evolution and its older files read them as null.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)

from settler_pipeline.store.manifest import SegmentInfo
from settler_pipeline.store.payloads import arrow_schema

PARTITION = "event_date"
LOG_FOLDER = "_delta_log"
HEAD_KEY = "settler.head_position"
# Every column nullable: the Parquet files declare them optional, and the typed payload columns
# (added to tables first published without them) read as null in files written before them.
TABLE_SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=True) for f in arrow_schema()] + [pa.field(PARTITION, pa.date32())]
)


def table_uri(segments_dir: Path) -> str:
    """The table's URI (an absolute local path)."""
    return str(segments_dir.resolve())


def exists(segments_dir: Path) -> bool:
    """Whether the log has been published at least once (a first commit interrupted before its
    commit file was written leaves an empty ``_delta_log`` folder: not a table yet)."""
    return (segments_dir / LOG_FOLDER / f"{0:020d}.json").is_file()


def current_files(segments_dir: Path) -> set[str]:
    """Paths (relative to the segments folder) of the table's current files; empty if unpublished."""
    if not exists(segments_dir):
        return set()
    root = Path(table_uri(segments_dir))
    return {Path(uri).relative_to(root).as_posix() for uri in DeltaTable(table_uri(segments_dir)).file_uris()}


def published_head(segments_dir: Path) -> int:
    """The position the table's current version publishes up to (0 if unpublished)."""
    if not exists(segments_dir):
        return 0
    history = DeltaTable(table_uri(segments_dir)).history(1)
    return int(history[0].get(HEAD_KEY, 0)) if history else 0


def sync(segments_dir: Path, segments: Sequence[SegmentInfo], head: int, previous_head: int) -> bool:
    """Make the table's current files exactly ``segments`` (the manifest's), recording ``head``, in
    one Delta commit. Segments beyond ``previous_head`` are new data; the others (compaction's output)
    and every removal rearrange data without changing it. Returns whether a commit was made."""
    uri = table_uri(segments_dir)
    live = {seg.path: seg for seg in segments}
    properties = CommitProperties(custom_metadata={HEAD_KEY: head})
    if not exists(segments_dir):
        adds = [_add(segments_dir, seg, data_change=True) for seg in segments]
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(TABLE_SCHEMA),
            adds,
            mode="error",
            partition_by=[PARTITION],
            name="settler_events",
            description="The Settler event log: one row per committed event, positions 1..head.",
            commit_properties=properties,
        )
        return True
    table = DeltaTable(uri)
    _add_new_columns(table)
    root = Path(uri)
    current = {Path(u).relative_to(root).as_posix() for u in table.file_uris()}
    added = [
        _add(segments_dir, live[path], data_change=live[path].last_position > previous_head)
        for path in sorted(live.keys() - current)
    ]
    now = int(time.time() * 1000)
    removed = [
        RemoveAction(path, False, now, None, {PARTITION: _partition_of(path)})
        for path in sorted(current - live.keys())
    ]
    if not added and not removed and previous_head == head:
        return False
    table.create_write_transaction(
        [*added, *removed],
        mode="append",
        schema=TABLE_SCHEMA,
        partition_by=[PARTITION],
        commit_properties=properties,
    )
    return True


def _add_new_columns(table: DeltaTable) -> None:
    """Evolve a table published before the typed payload columns existed: add them (nullable; older
    files read them as null). The schema commit repeats the published head, so the head stays readable
    from the newest commit even if the process stops right after it."""
    have = {field.name for field in table.schema().fields}
    missing = [f for f in DeltaSchema.from_arrow(TABLE_SCHEMA).fields if f.name not in have]
    if not missing:
        return
    history = table.history(1)
    head = int(history[0].get(HEAD_KEY, 0)) if history else 0
    table.alter.add_columns(missing, commit_properties=CommitProperties(custom_metadata={HEAD_KEY: head}))


def _partition_of(path: str) -> str:
    return path.split("/", 1)[0].removeprefix(f"{PARTITION}=")


def _add(segments_dir: Path, seg: SegmentInfo, *, data_change: bool) -> AddAction:
    st = (segments_dir / seg.path).stat()
    # File statistics let engines skip files by position without opening them.
    stats = {
        "numRecords": seg.rows,
        "minValues": {"global_position": seg.first_position},
        "maxValues": {"global_position": seg.last_position},
        "nullCount": {"global_position": 0},
    }
    return AddAction(
        seg.path,
        st.st_size,
        {PARTITION: seg.event_date},
        int(st.st_mtime * 1000),
        data_change,
        json.dumps(stats),
    )
