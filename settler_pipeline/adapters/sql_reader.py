"""The DuckDB SQL reader: a side's ``query`` run in a fresh, sandboxed in-memory DuckDB (SELECT
statements only, file access confined to the allowed directories), its result read as strings like
every other reader's."""

from __future__ import annotations

import contextlib
import glob as globbing
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb

from settler_pipeline.adapters.confinement import GLOB_CHARS, ROOTS_HINT
from settler_pipeline.adapters.readers import RawTable, no_rejects, stringify, with_line_numbers
from settler_pipeline.errors import JobSpecError


def read_duckdb_sql(query: str, base_dir: Path, allowed_directories: list[str] | None = None) -> RawTable:
    """Run ``query`` (SELECT statements only) in a fresh in-memory, sandboxed DuckDB and read its result.

    Relative file names in string literals that name files under ``base_dir`` are made absolute
    against it. The sandbox allows file access only under ``allowed_directories`` (default:
    ``base_dir``), installs and loads no extension beyond the bundled ones, and locks its
    configuration before the query runs. A refused statement or a DuckDB error becomes a
    :class:`JobSpecError` carrying the reason.
    """
    check_query(query)
    with _sandbox(base_dir, allowed_directories) as con, _query_errors():
        relation = con.sql(absolute_file_names(query, base_dir))
        if relation is None:
            raise JobSpecError(
                "the duckdb_sql query returned no rows to read (it is not a SELECT)",
                hint="end the query with a SELECT that returns one row per transaction",
            )
        frame = relation.pl()
    strings, temporal = stringify(frame)
    return RawTable(data=with_line_numbers(strings), rejected=no_rejects(), typed_temporal=temporal)


def check_query_access(query: str, base_dir: Path, allowed_directories: list[str]) -> None:
    """Bind ``query`` in the sandbox without reading its rows, so a file outside the allowed
    directories is refused before a run starts. Other problems (a file not there yet) are left to
    the run, which reports them."""
    check_query(query)
    with _sandbox(base_dir, allowed_directories) as con:
        try:
            con.sql(absolute_file_names(query, base_dir))
        except duckdb.PermissionException as e:
            raise _outside_roots(e) from e
        except duckdb.Error:
            return


@contextlib.contextmanager
def _sandbox(base_dir: Path, allowed_directories: list[str] | None) -> Iterator[duckdb.DuckDBPyConnection]:
    directories = allowed_directories if allowed_directories is not None else [f"{base_dir.resolve()}/"]
    con = duckdb.connect(":memory:")
    try:
        # Order matters: directories must be set before external access is switched off, and the
        # lock last, so the query cannot undo any of it.
        con.execute("SET allowed_directories = $1", [directories])
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET allow_community_extensions = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def _outside_roots(error: duckdb.Error) -> JobSpecError:
    return JobSpecError(
        f"the duckdb_sql query reads outside the allowed input roots: {str(error).strip()}",
        hint="relative file names must name files under the job spec's directory; " + ROOTS_HINT,
    )


_EXTENSION_FUNCTION = re.compile(
    r'Function with name "?(\w+)"? is not in the catalog, but it exists in the (\w+) extension'
)


def unavailable_function(error: duckdb.Error, where: str) -> str | None:
    """What to tell a user whose SQL called a function of a DuckDB extension (``delta_scan``,
    ``st_point``): ``where`` never installs or loads one (a query must not make the process download
    and run code), so DuckDB's own advice (INSTALL, SET autoinstall...) would not work. ``None`` for
    any other error."""
    found = _EXTENSION_FUNCTION.search(str(error))
    if found is None:
        return None
    return (
        f"{found.group(1)} is not available in {where}: it belongs to DuckDB's {found.group(2)} "
        f"extension, and {where} never installs or loads extensions"
    )


@contextlib.contextmanager
def _query_errors() -> Iterator[None]:
    try:
        yield
    except duckdb.PermissionException as e:
        raise _outside_roots(e) from e
    except duckdb.Error as e:
        if (unavailable := unavailable_function(e, "a duckdb_sql query")) is not None:
            raise JobSpecError(
                unavailable, hint="read the inputs with DuckDB's built-in readers (read_csv, read_parquet)"
            ) from e
        raise JobSpecError(
            f"DuckDB could not run the duckdb_sql query: {str(e).strip()}",
            hint="fix the query (test it in the duckdb shell from the job spec's directory)",
        ) from e


def check_query(query: str) -> None:
    """Refuse, without running anything, a ``duckdb_sql`` query that is not only SELECT statements
    (COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA, DDL) or does not parse: :class:`JobSpecError`."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise JobSpecError(
            f"DuckDB could not run the duckdb_sql query: {str(e).strip()}",
            hint="fix the query (test it in the duckdb shell from the job spec's directory)",
        ) from e
    refused = sorted({s.type.name for s in statements if s.type != duckdb.StatementType.SELECT})
    if refused or not statements:
        raise JobSpecError(
            "a duckdb_sql query may only hold SELECT statements"
            + (f", not {', '.join(refused)}" if refused else ""),
            hint="reading is all a job spec may do: no COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA or DDL",
        )


def absolute_file_names(query: str, base_dir: Path) -> str:
    """``query`` with each string literal that is a relative file name (or glob) matching something
    under ``base_dir`` replaced by its absolute path. DuckDB resolves relative names against the
    process's working directory first, which a sandbox must not allow, so relative names are
    resolved here instead; any other relative name stays relative and the sandbox refuses it."""
    out: list[str] = []
    last = 0
    for start, kind in duckdb.tokenize(query):
        if kind != duckdb.token_type.string_const or query[start : start + 1] != "'":
            continue
        end = _literal_end(query, start)
        value = query[start + 1 : end - 1].replace("''", "'")
        if not _local_file_name(value, base_dir):
            continue
        out.append(query[last:start])
        out.append("'" + str(base_dir.resolve() / value).replace("'", "''") + "'")
        last = end
    out.append(query[last:])
    return "".join(out)


def _literal_end(query: str, start: int) -> int:
    i = start + 1
    while i < len(query):
        if query[i] == "'":
            if query[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return len(query)


def _local_file_name(value: str, base_dir: Path) -> bool:
    if not value or value.startswith(("/", "~")) or "://" in value or ("/" not in value and "." not in value):
        return False
    candidate = base_dir / value
    if GLOB_CHARS & set(value):
        return bool(globbing.glob(str(candidate), recursive=True))
    return candidate.exists()
