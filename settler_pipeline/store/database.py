"""Shared access to a DuckDB database file by several processes: attach per operation, under an OS lock.

DuckDB lets one process open a file read-write or many read-only, never both, and fails at once
otherwise. Every operation here attaches the file to a private in-memory connection (~0.3 ms), runs,
and detaches, holding a shared (read) or exclusive (write) ``flock`` meanwhile, so processes wait their
turn and nobody holds the file while idle.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from settler_pipeline.errors import CorruptionError, StoreError
from settler_pipeline.store.locks import file_lock


class DuckDBFile:
    """One DuckDB database file shared between processes; see the module docstring."""

    def __init__(
        self,
        path: Path,
        schema_sql: str,
        *,
        what: str,
        read_only: bool = False,
        missing_ok: bool = False,
        fix: str = "run `settler log reindex` (or `settler log repair`) to rebuild it from the segments",
    ) -> None:
        self.path = path
        self.fix = fix  # the hint of the error a missing or unreadable file raises
        self.schema_sql = schema_sql
        self.what = what
        self.read_only = read_only  # never create, lock for writing or write the file
        self.missing_ok = missing_ok  # read-only: a missing file reads as empty tables
        self.lock_path = path.with_name(path.name + ".lock")
        self._con = duckdb.connect(":memory:")
        self._schema_for: tuple[int, int] | None = None  # (device, inode) the schema was applied to

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the index attached read-only as ``idx`` (shared lock)."""
        if not self.path.exists():
            if self.read_only and self.missing_ok:
                empty = self._empty()
                try:
                    yield empty
                finally:
                    empty.close()
                return
            if self.read_only:
                raise CorruptionError(f"the {self.what} {self.path} is missing", hint=self.fix)
            with self.writing():
                pass
        with file_lock(self.lock_path, shared=True, create=not self.read_only):
            self._attach(read_only=True)
            try:
                yield self._con
            finally:
                self._con.execute("DETACH idx")

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the index attached read-write as ``idx`` (exclusive lock), inside one
        transaction that commits when the block exits normally."""
        if self.read_only:
            raise StoreError(f"the {self.what} {self.path} was opened read-only")
        with file_lock(self.lock_path):
            self._attach(read_only=False)
            try:
                st = os.stat(self.path)
                # once per file per process (a rebuilt index is a new file): ~3 ms per write. A file
                # deleted and created anew can get the same inode: an empty one is seen by its catalog.
                if self._schema_for != (st.st_dev, st.st_ino) or not self._has_tables():
                    self._con.execute(self.schema_sql)
                    self._schema_for = (st.st_dev, st.st_ino)
                self._con.execute("BEGIN TRANSACTION")
                try:
                    yield self._con
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            finally:
                self._con.execute("DETACH idx")

    def _has_tables(self) -> bool:
        """Whether the attached ``idx`` holds any table (a catalog lookup, no data read)."""
        row = self._con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'idx'").fetchone()
        return bool(row and row[0])

    def _empty(self) -> duckdb.DuckDBPyConnection:
        """A connection whose ``idx`` holds the schema's tables, empty (for a file never written)."""
        con = duckdb.connect(":memory:")
        con.execute("ATTACH ':memory:' AS idx")
        con.execute(self.schema_sql)
        return con

    def _attach(self, *, read_only: bool) -> None:
        mode = " (READ_ONLY)" if read_only else ""
        try:
            # The path is ours (never user input); ATTACH takes no bound parameters for the file name.
            self._con.execute(f"ATTACH '{_quote(self.path)}' AS idx{mode}")
        except duckdb.Error as exc:
            text = str(exc)
            if any(word in text for word in _NOT_DAMAGE):
                raise StoreError(f"cannot open the {self.what} {self.path}: {text}", hint=self.fix) from exc
            # the file is there but DuckDB cannot read it as a database: damaged, not a bug
            raise CorruptionError(
                f"the {self.what} {self.path} is damaged: DuckDB cannot open it ({text})", hint=self.fix
            ) from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a parameterised read-only query against the index (the file is attached as ``idx``)."""
        with self.reading() as con:
            return con.execute(sql, list(params)).fetchall()

    def query_frame(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """Like :meth:`query`, as a Polars frame."""
        with self.reading() as con:
            frame: pl.DataFrame = con.sql(sql, params=list(params)).pl()
            return frame


# DuckDB's words for an ATTACH that failed for a reason other than the file's bytes (access, locks,
# space): the file may well be intact
_NOT_DAMAGE = ("Permission denied", "lock", "No space left", "Disk quota", "Read-only file system")


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
