"""The event store: an append-only log of Parquet segments plus a write-ahead tail, indexed by DuckDB.

Where truth lives (see ``docs/architecture.md``):

* the committed log is the segment files of the Delta table's newest version followed by the committed
  records of the write-ahead log file its state names; together they hold positions ``1..head`` with
  no gap;
* one Delta commit (``log/segments/_delta_log``, carrying the log's state) is the commit point of every
  segment write, flush and compaction; a complete, checksummed write-ahead record is the commit point
  of a small commit (the tail is private until it is moved into segments);
* the DuckDB index is derived: it always covers at least the committed segments (rows are added before
  the commit that adds their segment), is filtered by the committed state on read, and is rebuilt from
  the segments by ``reindex``.

Writers serialise on an exclusive ``flock`` (``write.lock``) only while they commit; positions and stream
versions are assigned under it, so global order is gap-free and equals commit order. Readers take no
write lock: they read one table version's state and the write-ahead records present at that moment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.domain.registry import EventRegistry, default_registry
from settler_pipeline.errors import NotFoundError, StoreError, ValidationError
from settler_pipeline.ids import validate_uuid
from settler_pipeline.logs import get_logger
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.limits import (
    BULK_ROWS,
    GRANULE_CACHE_LIMIT,
    PROJECTION_COLUMNS,
    WAL_FLUSH_ROWS,
)
from settler_pipeline.store.locks import DEFAULT_TIMEOUT_S
from settler_pipeline.store.recovery import LogRecovery
from settler_pipeline.store.rolled_reader import RolledReader
from settler_pipeline.store.segments import list_segment_files
from settler_pipeline.store.snapshots import Snapshot
from settler_pipeline.store.view import LogView
from settler_pipeline.store.writer import LogWriter
from settler_pipeline.store.writer_types import AppendResult

_log = get_logger(__name__)

__all__ = [
    "BULK_ROWS",
    "GRANULE_CACHE_LIMIT",
    "PROJECTION_COLUMNS",
    "WAL_FLUSH_ROWS",
    "AppendResult",
    "EventStore",
    "LogView",
    "require_log",
]


def require_log(data_dir: str | os.PathLike[str]) -> None:
    """Raise unless ``data_dir`` holds a Settler event log (:class:`ValidationError` for a file,
    :class:`NotFoundError` otherwise): a mistyped ``--data-dir`` must not become a new, empty store."""
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise ValidationError(f"data directory {path} is a file", hint="pass a directory path")
    if not (path / "log").is_dir():
        if (path / "access.json").is_file():
            # tenants were created there, but nothing has been run yet
            raise NotFoundError(
                f"{path} has tenants but no runs yet (its event log is created by the first run)",
                hint=f"start one with `settler reconcile JOB_SPEC --tenant NAME --data-dir {path}`",
            )
        raise NotFoundError(f"no Settler data at {path}", hint="pass --data-dir or set SETTLER_DATA_DIR")


# What the libraries the log is written with cannot address in a path: deltalake refuses control
# characters and decodes ``%41`` as ``A`` and ``\`` as ``/`` (the table is then not where it looks),
# DuckDB reads ``?`` as the start of URL parameters, Polars reads ``[...]`` as a glob.
_UNADDRESSABLE = re.compile(r"[\x00-\x1f\x7f?\[\]\\]|%[0-9A-Fa-f]{2}")


def refuse_unaddressable(data_dir: str | os.PathLike[str]) -> None:
    r"""Raise :class:`ValidationError` when ``data_dir``'s absolute path holds a character the log's
    libraries cannot address (a control character, ``?``, ``[``, ``]``, ``\``, ``%`` and two hex
    digits): a data directory there would fail on its first commit with an internal error."""
    found = _UNADDRESSABLE.search(str(Path(data_dir).absolute()))
    if found is not None:
        raise ValidationError(
            f"data directory {str(data_dir)!r} cannot hold a Settler log: its path has {found.group()!r}, "
            "which the Delta Lake, DuckDB and Polars libraries the log is written with cannot address",
            hint="choose a path without control characters, ?, [, ], \\ or %XX (spaces and letters "
            "of any language are fine)",
        )


class EventStore(RolledReader, LogWriter, LogRecovery):
    """The append-only event log of one data directory. Open it with :meth:`open`.

    Safe for several processes at once; one instance is not meant to be shared between threads. The
    parts live in their own modules: ``view`` (the committed log as read), ``reader`` and
    ``rolled_reader``, ``writer`` and ``lookups``, ``recovery``; this class only puts them together."""

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        registry: EventRegistry | None = None,
        lock_timeout_s: float = DEFAULT_TIMEOUT_S,
        recover_index: bool = True,
        read_only: bool = False,
    ) -> EventStore:
        """Open the log under ``data_dir``.

        A writer (the default) creates the log if needed and recovers from any interrupted write:
        leftovers of interrupted writes and files the commit point does not name are moved to a
        quarantine folder (never deleted), a torn write-ahead record that no commit acknowledged is
        moved aside and cut off, and the index is brought in line with the committed state. A directory
        written when ``manifest.json`` was the commit point is migrated (one Delta commit carrying its
        state; the file then moves to quarantine). A damaged log is left exactly as found: reads and
        appends then raise :class:`CorruptionError`.

        ``read_only=True`` takes no lock, recovers nothing and writes nothing (it works on a read-only
        copy and beside writers); a directory without a Settler log raises :class:`NotFoundError`.
        ``recover_index=False`` skips the index step and leaves a missing or unreadable commit point alone
        (for ``reindex``, which rebuilds both from the segments)."""
        path = Path(data_dir)
        refuse_unaddressable(path)
        if read_only:
            require_log(path)
        elif path.exists() and not path.is_dir():
            raise ValidationError(f"data directory {path} is a file", hint="pass a directory path")
        store = cls(
            path, registry=registry or default_registry, lock_timeout_s=lock_timeout_s, read_only=read_only
        )
        if read_only:
            if not store.has_commit_point() and list_segment_files(store.segments_dir):
                raise StoreError(
                    f"the event log at {store.root} has segment files but no commit point "
                    f"({store.segments_dir / delta_table.LOG_FOLDER} is missing)",
                    hint="run `settler log reindex` to rebuild it from the segments",
                )
            return store
        for directory in (store.root, store.segments_dir, store.staging_dir, store.wal_dir):
            directory.mkdir(parents=True, exist_ok=True)
        with store._write_lock():
            store._recover(recover_index=recover_index)
        return store

    def close(self) -> None:
        """Release cached file handles and connections."""
        self._reader.close()
        self._copy_reader.close()
        self.index.close()
        self.snapshots.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_snapshot(
        self,
        aggregate_id: str,
        aggregate_type: str,
        aggregate_version: int,
        state: Mapping[str, Any],
        *,
        schema_version: int,
        global_position: int | None = None,
    ) -> None:
        """Store a snapshot of a stream's state after ``aggregate_version`` under ``schema_version``."""
        self.snapshots.save(
            Snapshot(
                aggregate_id=validate_uuid("aggregate_id", aggregate_id),
                aggregate_type=aggregate_type,
                aggregate_version=aggregate_version,
                schema_version=schema_version,
                global_position=global_position or 0,
                state=dict(state),
                created_at=datetime.now(UTC),
            )
        )

    def get_latest_snapshot(
        self, aggregate_id: str, aggregate_type: str, *, schema_version: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot of a stream (only of ``schema_version`` when given), or ``None``."""
        return self.snapshots.latest(
            validate_uuid("aggregate_id", aggregate_id), aggregate_type, schema_version
        )

    def get_events_after_snapshot(
        self, aggregate_id: str, aggregate_type: str, snapshot_version: int
    ) -> list[EventEnvelope]:
        """The stream's events after version ``snapshot_version``."""
        return self.get_events(aggregate_id, aggregate_type, from_version=snapshot_version + 1)
