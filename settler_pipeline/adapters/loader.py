"""Loading one side of a reconciliation: read the input, map and parse it, split it by date window."""

from __future__ import annotations

import contextlib
import difflib
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from settler_pipeline.adapters.amounts import CURRENCY_EXPONENTS, DEFAULT_EXPONENT
from settler_pipeline.adapters.confinement import GLOB_CHARS, ROOTS_HINT, InputRoots
from settler_pipeline.adapters.normalise import normalise
from settler_pipeline.adapters.readers import (
    RawTable,
    read_csv,
    read_csv_header,
    read_jsonl,
    read_parquet,
)
from settler_pipeline.adapters.reasons import column_listing
from settler_pipeline.adapters.sql_reader import check_query_access, read_duckdb_sql
from settler_pipeline.domain.transactions import QUARANTINE_SCHEMA
from settler_pipeline.errors import JobSpecError, NotFoundError
from settler_pipeline.jobspec import DateRange, JobSpec, SideSpec


@dataclass(frozen=True)
class LoadedSide:
    """One side, loaded.

    ``records`` is exactly in TRANSACTION_SCHEMA (column order too) and holds the valid rows whose
    date lies in the range ± margin (``in_range`` False for those only in the margin); ``quarantine``
    (QUARANTINE_SCHEMA) holds every row that failed to parse or validate, with the reason;
    ``out_of_window`` counts valid rows outside range ± margin, which are skipped. Invariant:
    ``total_rows == len(records) + len(quarantine) + out_of_window``.
    """

    records: pl.DataFrame
    quarantine: pl.DataFrame
    total_rows: int
    out_of_window: int
    duration_ms: int


def load_side(
    spec: SideSpec,
    *,
    date_range: DateRange,
    margin_days: int,
    base_dir: Path,
    side: str | None = None,
    roots: InputRoots | None = None,
    keep_raw: bool = True,
) -> LoadedSide:
    """Read, map, parse and validate one side for ``date_range`` widened by ``margin_days``.

    Relative paths (and relative file names in a duckdb_sql query) resolve against ``base_dir``;
    ``side`` ("source"/"target") only prefixes field paths in error messages. Every file read must lie
    under ``roots`` (default: ``base_dir`` only; see :mod:`settler_pipeline.adapters.confinement`). Raises
    :class:`~settler_pipeline.errors.NotFoundError` for a missing file and
    :class:`~settler_pipeline.errors.JobSpecError` for an unreadable input, a mapping that names a
    column the input does not have, or a failing query. Row-level problems never raise: those rows
    are quarantined with a reason, always with their ``raw`` row; valid records carry theirs only
    with ``keep_raw`` (a run does not need them: it leaves ``raw`` null and saves building it).
    """
    started = time.perf_counter()
    if margin_days < 0:
        raise JobSpecError(f"margin_days must be >= 0, got {margin_days}", hint="use date_window_days >= 0")
    table = read_input(spec, base_dir, roots if roots is not None else InputRoots())
    columns = resolve_columns(spec, table.columns, side=side)
    normalised = normalise(
        table.data,
        spec,
        columns,
        date_range_start=date_range.start,
        date_range_end=date_range.end,
        margin_days=margin_days,
        typed_temporal=table.typed_temporal,
        keep_raw=keep_raw,
    )
    quarantine = normalised.quarantine
    if table.rejected.height:
        quarantine = pl.concat([table.rejected, quarantine]).sort("line_number")
    quarantine = quarantine.select([pl.col(n).cast(t) for n, t in QUARANTINE_SCHEMA.items()])
    return LoadedSide(
        records=normalised.records,
        quarantine=quarantine,
        total_rows=table.total_rows,
        out_of_window=normalised.out_of_window,
        duration_ms=round((time.perf_counter() - started) * 1000),
    )


def earliest_day(spec: JobSpec, roots: InputRoots | None = None) -> date | None:
    """The UTC day of the earliest valid source record ``spec`` reads (None if it has none): where a
    schedule of daily runs of the spec can start. Reads the whole source input, confined to
    ``roots`` like a run."""
    everything = DateRange(start=date(1900, 1, 1), end=date(2999, 12, 31))
    loaded = load_side(
        spec.source, date_range=everything, margin_days=0, base_dir=spec.base_dir, side="source", roots=roots
    )
    first = loaded.records["occurred_at"].min()
    return first.date() if first is not None else None  # type: ignore[union-attr]


def input_bytes(spec: SideSpec, *, base_dir: Path, roots: InputRoots) -> int | None:
    """The bytes on disk the side will read (every file a glob names), 0 for files not there yet, or
    None when that is unknown before running (a ``duckdb_sql`` query). Raises :class:`JobSpecError`
    for an input outside ``roots``, like reading it would."""
    if spec.adapter == "duckdb_sql":
        return None
    assert spec.path is not None  # guaranteed by SideSpec validation
    try:
        files = roots.expand(spec.path, base_dir, what="input")
    except NotFoundError:
        return 0
    return sum(path.stat().st_size for path in files if path.is_file())


def read_input(spec: SideSpec, base_dir: Path, roots: InputRoots) -> RawTable:
    """The side's input as read (string columns), confined to ``roots``; see :func:`load_side`."""
    if spec.adapter == "duckdb_sql":
        assert spec.query is not None  # guaranteed by SideSpec validation
        return read_duckdb_sql(spec.query, base_dir, roots.sandbox_directories(base_dir))
    assert spec.path is not None  # guaranteed by SideSpec validation
    if spec.adapter == "parquet":
        files = roots.expand(spec.path, base_dir, what="input")
        if any(file.is_dir() for file in files):
            # Polars would read the directory's files unchecked (a symlink in it could lead out)
            raise _a_directory(spec.path, spec.adapter)
        return read_parquet(spec.path, files)
    path = roots.check(spec.path, base_dir, what="input")
    if spec.adapter == "csv":
        return read_csv(path, spec.csv_options, _mapped_names(spec))
    return read_jsonl(path)


def check_spec(spec: JobSpec, roots: InputRoots) -> None:
    """:func:`check_side` for both sides, and both sides give every currency either names the same
    minor-unit digits: amounts are compared in minor units, so 12.345 XTS read with 3 digits on one
    side and 12.35 with 2 on the other could never match (and would show with the wrong places)."""
    for side, side_spec in (("source", spec.source), ("target", spec.target)):
        check_side(side_spec, base_dir=spec.base_dir, roots=roots, side=side)
    source_digits = CURRENCY_EXPONENTS | spec.source.currency.exponents
    target_digits = CURRENCY_EXPONENTS | spec.target.currency.exponents
    for code in sorted(set(spec.source.currency.exponents) | set(spec.target.currency.exponents)):
        source = source_digits.get(code, DEFAULT_EXPONENT)
        target = target_digits.get(code, DEFAULT_EXPONENT)
        if source != target:
            raise JobSpecError(
                f"currency {code} has {source} decimal places on the source side and {target} on the "
                "target side; amounts are compared in minor units, so both sides must agree",
                hint=f"declare currency: {{exponents: {{{code}: N}}}} with the same N on both sides",
            )


def _a_directory(path: Path, adapter: str) -> JobSpecError:
    return JobSpecError(
        f"input {path} is a directory; an input path names a file or a glob of files",
        hint=f"name the export file in it, or a glob such as {path / f'*.{adapter}'}",
    )


def check_side(spec: SideSpec, *, base_dir: Path, roots: InputRoots, side: str | None = None) -> None:
    """What can be checked before a run starts: every input lies inside ``roots`` (a glob's prefix
    and the files it matches now; its matches are checked again when read), a ``duckdb_sql`` side
    has a sandbox it can run in, and a CSV file that already exists has the mapped columns. Raises
    :class:`JobSpecError`; a missing file is left to the run (it may arrive before the run reads it)."""
    if spec.adapter == "duckdb_sql":
        assert spec.query is not None  # guaranteed by SideSpec validation
        check_query_access(spec.query, base_dir, roots.sandbox_directories(base_dir))
        return
    assert spec.path is not None  # guaranteed by SideSpec validation
    parts = spec.path.parts
    fixed = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), len(parts))
    if ".." in parts[fixed:]:
        raise JobSpecError(f"input {spec.path} has '..' after a glob character", hint=ROOTS_HINT)
    path = roots.check(Path(*parts[:fixed]), base_dir, what="input")
    if fixed == len(parts) and path.is_dir():
        raise _a_directory(spec.path, spec.adapter)
    if fixed < len(parts):
        # the glob's matches today are checked too, so one leading out (a symlink) refuses the run
        # before anything is recorded; files that arrive later are checked when read
        with contextlib.suppress(NotFoundError):  # none yet: they may arrive before the run reads
            roots.expand(spec.path, base_dir, what="input")
        return
    if spec.adapter == "csv" and path.is_file():
        header = read_csv_header(path, spec.csv_options, _mapped_names(spec))
        if header is not None:
            resolve_columns(spec, header, side=side)


def _mapped_names(spec: SideSpec) -> set[str]:
    """Every input column the side's mapping may read."""
    return {name for candidates in spec.columns.mapped().values() for name in candidates}


def resolve_columns(spec: SideSpec, available: list[str], *, side: str | None = None) -> dict[str, list[str]]:
    """Map each canonical field to the candidate columns that exist in the input.

    A single named column must exist; of a list, at least one must exist; a field listed in
    ``columns.optional`` may have none (it is then left out). Raises :class:`JobSpecError` naming the
    field, the missing column and the columns that are there.
    """
    present = set(available)
    resolved: dict[str, list[str]] = {}
    for field, candidates in spec.columns.mapped().items():
        found = [c for c in candidates if c in present]
        if found:
            resolved[field] = found
            continue
        if field in spec.columns.optional:
            continue
        prefix = f"{side}." if side else ""
        field = field.split("#")[0]  # a term of an amount expression reports as the amount
        names = ", ".join(repr(c) for c in candidates)
        what = f"column {names}, which is" if len(candidates) == 1 else f"columns {names}, none of which is"
        listing = column_listing([c.replace("\x00", "") for c in available])
        hint = "column names are case-sensitive"
        close = _close_match(candidates, available)
        if close:
            hint = f"did you mean {close!r}? {hint}"
        if spec.adapter == "csv" and not spec.csv_options.header:
            hint += "; without a header the columns are column_1, column_2, ..."
        if spec.adapter == "csv":
            hint = _misread_header(spec, available) or hint
        raise JobSpecError(
            f"{prefix}columns.{field} names {what} not in {spec.describe()}; columns there: {listing}",
            hint=hint,
        )
    return resolved


_DELIMITERS = {";": ("';'", '";"'), "\t": ("tabs", '"\\t"'), "|": ("'|'", '"|"'), ",": ("','", '","')}
"""Field separators a header read with the wrong one shows: how to say them, how the job spec writes them."""


def _misread_header(spec: SideSpec, available: list[str]) -> str | None:
    """What to set when a CSV header was misread rather than a column misnamed: NUL bytes in it (a
    UTF-16 file read as UTF-8), or one column holding another delimiter."""
    if any("\x00" in name for name in available):
        return (
            "the file looks UTF-16 encoded (its header has NUL bytes): set csv.encoding: utf-16 "
            "(utf-16-le or utf-16-be for a file without a byte-order mark)"
        )
    if len(available) == 1:
        for delimiter, (said, written) in _DELIMITERS.items():
            if delimiter != spec.csv_options.delimiter and delimiter in available[0]:
                return (
                    f"the header was read as one column holding {said}: set csv.delimiter: {written} "
                    f"(the file is not separated by {spec.csv_options.delimiter!r})"
                )
    return None


def _close_match(candidates: list[str], available: list[str]) -> str | None:
    lowered = {c.lower(): c for c in available}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    for candidate in candidates:
        close = difflib.get_close_matches(candidate, available, n=1)
        if close:
            return close[0]
    return None
