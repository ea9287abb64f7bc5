"""Readers: turn a CSV, Parquet, JSON Lines file or a DuckDB query into a table of string columns.

Every reader returns a :class:`RawTable` whose data columns are all ``String`` (values as read), plus
the 1-based line number of each row and the row as a JSON object string for audit. Typed inputs
(Parquet, DuckDB) are turned into strings here too (dates and times as ISO 8601), so one normaliser
parses every adapter's output the same way (DuckDB queries are read by
:mod:`~settler_pipeline.adapters.sql_reader`). Failures of the whole input become user errors:
:class:`NotFoundError` for a missing file, :class:`JobSpecError` for anything unreadable.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from settler_pipeline.adapters.reasons import LINE_COL, RAW_COL
from settler_pipeline.domain.transactions import QUARANTINE_SCHEMA
from settler_pipeline.errors import JobSpecError, NotFoundError
from settler_pipeline.jobspec import CsvOptions


@dataclass(frozen=True)
class RawTable:
    """Rows as read: ``data`` holds the input's columns as strings plus :data:`LINE_COL` (Int64) and,
    where the reader kept each row's original text (JSON Lines), :data:`RAW_COL` (see
    :func:`~settler_pipeline.adapters.reasons.raw_json`); ``rejected`` holds rows that could not be
    read at all (quarantine schema); ``typed_temporal`` names columns that were typed dates/times."""

    data: pl.DataFrame
    rejected: pl.DataFrame
    typed_temporal: frozenset[str] = frozenset()

    @property
    def columns(self) -> list[str]:
        """The input's column names (without the line/raw helper columns)."""
        return [c for c in self.data.columns if c not in (LINE_COL, RAW_COL)]

    @property
    def total_rows(self) -> int:
        """Data rows read, including rejected ones."""
        return self.data.height + self.rejected.height


def no_rejects() -> pl.DataFrame:
    """An empty table of rejected rows (the quarantine schema): the input was read whole."""
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise NotFoundError(
            f"input file not found: {path}",
            hint="check path: relative paths resolve against the job spec's directory",
        )


def with_line_numbers(frame: pl.DataFrame, raw: pl.Expr | pl.Series | None = None) -> pl.DataFrame:
    """Add the 1-based row ordinal and, when given, the row's original text as :data:`RAW_COL`
    (otherwise :func:`~settler_pipeline.adapters.reasons.raw_json` derives it where needed)."""
    line = pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE_COL)
    if raw is None:
        return frame.with_columns(line)
    return frame.with_columns(line, raw.alias(RAW_COL))


def read_csv(path: Path, options: CsvOptions, mapped: Collection[str] = ()) -> RawTable:
    """Read a delimited text file with every column as a string.

    Lines that are entirely blank (or only delimiters) are ignored; line numbers count data rows
    after the header, before blank lines are removed. Without a header the columns are named
    ``column_1``, ``column_2``, ... A header naming one of the ``mapped`` columns twice is a
    :class:`JobSpecError` (other repeated or empty names are never read, so they are left alone).
    """
    _require_file(path)
    source: Path | bytes = path
    if options.encoding not in ("utf-8", "utf-8-sig"):
        try:
            source = path.read_bytes().decode(options.encoding).encode("utf-8")
        except UnicodeDecodeError as e:
            raise JobSpecError(
                f"cannot decode {path} as {options.encoding}: {e}",
                hint="set csv.encoding to the file's encoding (e.g. utf-8, cp1252, latin-1)",
            ) from e
    try:
        frame = pl.read_csv(
            source,
            has_header=options.header,
            separator=options.delimiter,
            quote_char=options.quote_char,
            skip_lines=options.skip_rows,
            infer_schema=False,
            empty_string_is_null=False,
            raise_if_empty=True,
            glob=False,
        )
    except pl.exceptions.NoDataError as e:
        raise JobSpecError(
            f"{path} is empty: no header and no rows",
            hint="a CSV needs at least a header line; check csv.skip_rows",
        ) from e
    except (pl.exceptions.PolarsError, OSError) as e:
        message = _first_line(e)
        hint = "check csv.delimiter, csv.quote_char and csv.skip_rows"
        if "utf-8" in message.lower() or "utf8" in message.lower():
            hint = "the file is not UTF-8: set csv.encoding (e.g. cp1252 or latin-1)"
        raise JobSpecError(f"cannot read {path} as CSV: {message}", hint=hint) from e
    if not options.header:
        frame.columns = [f"column_{i}" for i in range(1, frame.width + 1)]
    else:
        _refuse_repeated_names(path, options, mapped)
    frame = with_line_numbers(frame)
    return RawTable(data=_drop_blank_rows(frame), rejected=no_rejects())


def read_csv_header(path: Path, options: CsvOptions, mapped: Collection[str] = ()) -> list[str] | None:
    """The column names of a CSV file (``None`` when the first lines cannot be read: reading the whole
    file will then report the problem); refuses a header naming one of the ``mapped`` columns twice
    as :func:`read_csv` does."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)  # enough for the preamble and the header line
        if options.encoding not in ("utf-8", "utf-8-sig"):
            head = head.decode(options.encoding, errors="replace").encode("utf-8")
        frame = pl.read_csv(
            head,
            has_header=options.header,
            separator=options.delimiter,
            quote_char=options.quote_char,
            skip_lines=options.skip_rows,
            infer_schema=False,
            n_rows=1,
            glob=False,
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeError, LookupError):
        return None
    if not options.header:
        return [f"column_{i}" for i in range(1, frame.width + 1)]
    _refuse_repeated_names(path, options, mapped)
    return frame.columns


def _refuse_repeated_names(path: Path, options: CsvOptions, mapped: Collection[str]) -> None:
    """Raise :class:`JobSpecError` when the header names a ``mapped`` column twice: the mapping could
    only ever read the first of them, whichever the file meant. The names are those of the header
    line as written (the reader renames a repeat ``<name>_duplicated_<n>``, which a real column may
    also be called)."""
    wanted = set(mapped)
    if not wanted:
        return
    names = _header_line(path, options)
    repeated = sorted({name for name in names if name in wanted and names.count(name) > 1})
    if repeated:
        listed = ", ".join(repr(name) for name in repeated)
        raise JobSpecError(
            f"{path} names the column(s) {listed} more than once in its header, and the job spec reads them",
            hint="rename the repeated column in the file, or read it without its header "
            "(csv: {header: false, skip_rows: <lines before the data>}) and map the columns by "
            "position: column_1, column_2, ...",
        )


def _header_line(path: Path, options: CsvOptions) -> list[str]:
    """The header's names as written (after ``skip_rows`` lines), or none if it cannot be read."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
        # Splitting the whole megabyte into lines cost more than reading it: a first 64 KiB that
        # holds the header line and the start of the next is enough.
        lines = head[: 1 << 16].decode(options.encoding, errors="replace").splitlines()
        if len(lines) <= options.skip_rows + 1:
            lines = head.decode(options.encoding, errors="replace").splitlines()
    except (OSError, LookupError):
        return []
    if len(lines) <= options.skip_rows:
        return []
    line = [lines[options.skip_rows]]
    if options.quote_char is None:
        reader = csv.reader(line, delimiter=options.delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(line, delimiter=options.delimiter, quotechar=options.quote_char)
    try:
        return next(reader, [])
    except csv.Error:  # a name over the csv module's field limit (128 KiB): no header to check
        return []


def _drop_blank_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Drop rows whose every column is empty or whitespace (blank lines, lines of only delimiters)."""
    data_columns = [c for c in frame.columns if c not in (LINE_COL, RAW_COL)]
    if not data_columns:
        return frame

    def blank(c: str) -> pl.Expr:
        return pl.col(c).is_null() | (pl.col(c).str.strip_chars().str.len_bytes() == 0)

    # Checking the first column alone is cheap and almost always rules a row out; only the few
    # candidates get the full check.
    candidates = frame.select(blank(data_columns[0]).arg_true()).to_series()
    if candidates.len() == 0:
        return frame
    suspects = frame[candidates]
    blank_lines = suspects.filter(pl.all_horizontal([blank(c) for c in data_columns]))[LINE_COL]
    if blank_lines.len() == 0:
        return frame
    return frame.filter(~pl.col(LINE_COL).is_in(blank_lines.implode()))


def read_parquet(path: Path, files: list[Path] | None = None) -> RawTable:
    """Read one Parquet file, or ``files`` (a glob's matches, already expanded and checked by the
    caller, read in the order given with line numbers continuing across files); values are turned
    into strings. ``path`` names the input in messages."""
    if files is None:
        _require_file(path)
        files = [path]
    try:
        frame = pl.read_parquet(files)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise JobSpecError(
            f"cannot read {path} as Parquet: {_first_line(e)}",
            hint="check the file is Parquet and, for a glob, that all files share one schema",
        ) from e
    strings, temporal = stringify(frame)
    return RawTable(data=with_line_numbers(strings), rejected=no_rejects(), typed_temporal=temporal)


def read_jsonl(path: Path) -> RawTable:
    """Read JSON Lines: one JSON object per line. Nested objects become dotted columns
    (``metadata.order_id``); arrays are kept as JSON text. ``raw`` is the line itself and the line
    number is the physical line in the file (blank lines are skipped but counted). Lines that are not
    a JSON object are rejected to quarantine with their line number."""
    _require_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise JobSpecError(
            f"cannot read {path}: it is not UTF-8 ({e})", hint="JSON Lines must be UTF-8"
        ) from e
    lines = text.splitlines()
    numbers = [i for i, line in enumerate(lines, start=1) if line.strip()]
    kept = [lines[i - 1].strip() for i in numbers]
    if not kept:
        empty = pl.DataFrame(schema={LINE_COL: pl.Int64, RAW_COL: pl.String})
        return RawTable(data=empty, rejected=no_rejects())
    try:
        frame = pl.read_ndjson(io.BytesIO("\n".join(kept).encode()), infer_schema_length=None)
        if frame.height != len(kept):
            raise ValueError("row count differs from line count")
        strings, temporal = stringify(frame)
        data = strings.with_columns(
            pl.Series(LINE_COL, numbers, dtype=pl.Int64), pl.Series(RAW_COL, kept, dtype=pl.String)
        )
        return RawTable(data=data, rejected=no_rejects(), typed_temporal=temporal)
    except (pl.exceptions.PolarsError, ValueError):
        # Rare: a malformed line or mixed types. Fall back to per-line parsing so that only the bad
        # lines are quarantined and the rest still load.
        return _read_jsonl_per_line(numbers, kept)


def _read_jsonl_per_line(numbers: list[int], lines: list[str]) -> RawTable:
    rows: list[dict[str, str | None]] = []
    good_numbers: list[int] = []
    good_raw: list[str] = []
    rejected: list[tuple[int, str, str]] = []
    for number, line in zip(numbers, lines, strict=True):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            rejected.append((number, json.dumps({"line": line}), f"json: cannot parse line: {e.msg}"))
            continue
        if not isinstance(value, dict):
            rejected.append(
                (number, json.dumps({"line": line}), f"json: line is a {type(value).__name__}, not an object")
            )
            continue
        rows.append(_flatten_python(value))
        good_numbers.append(number)
        good_raw.append(line)
    names: list[str] = []
    for row in rows:
        for key in row:
            if key not in names:
                names.append(key)
    data = pl.DataFrame(
        {name: [row.get(name) for row in rows] for name in names},
        schema=dict.fromkeys(names, pl.String),
    ).with_columns(
        pl.Series(LINE_COL, good_numbers, dtype=pl.Int64), pl.Series(RAW_COL, good_raw, dtype=pl.String)
    )
    quarantine = pl.DataFrame(rejected, schema=QUARANTINE_SCHEMA, orient="row")
    return RawTable(data=data, rejected=quarantine)


def _flatten_python(value: dict[str, object], prefix: str = "") -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            out.update(_flatten_python(item, f"{name}."))
        elif item is None:
            out[name] = None
        elif isinstance(item, str):
            out[name] = item
        elif isinstance(item, bool):
            out[name] = "true" if item else "false"
        elif isinstance(item, int | float):
            out[name] = json.dumps(item)
        else:
            out[name] = json.dumps(item, separators=(",", ":"))
    return out


def stringify(frame: pl.DataFrame) -> tuple[pl.DataFrame, frozenset[str]]:
    """Flatten struct columns to dotted names and turn every column into strings: dates and times as
    ISO 8601 (tz-aware ones in UTC with ``+00:00``), lists as JSON, the rest as Polars casts them
    (decimals keep their exact digits). Returns the frame and the names of typed date/time columns."""
    frame = _flatten_structs(frame)
    exprs: list[pl.Expr] = []
    temporal: set[str] = set()
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            exprs.append(col)
        elif isinstance(dtype, pl.Datetime):
            temporal.add(name)
            if dtype.time_zone is not None:
                exprs.append(
                    col.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.String) + "+00:00"
                )
            else:
                exprs.append(col.cast(pl.String))
        elif isinstance(dtype, pl.Date):
            temporal.add(name)
            exprs.append(col.cast(pl.String))
        elif isinstance(dtype, pl.List | pl.Array):
            encoded = pl.struct(col.alias("v")).struct.json_encode()
            exprs.append(pl.when(col.is_not_null()).then(encoded.str.slice(5, encoded.str.len_chars() - 6)))
        elif isinstance(dtype, pl.Binary):
            exprs.append(col.bin.encode("hex"))
        else:
            exprs.append(col.cast(pl.String))
    out = frame.select([e.alias(n) for e, n in zip(exprs, frame.columns, strict=True)])
    return out, frozenset(temporal)


def _flatten_structs(frame: pl.DataFrame) -> pl.DataFrame:
    while any(isinstance(dtype, pl.Struct) for dtype in frame.schema.values()):
        exprs: list[pl.Expr] = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Struct):
                exprs.extend(
                    pl.col(name).struct.field(f.name).alias(f"{name}.{f.name}") for f in dtype.fields
                )
            else:
                exprs.append(pl.col(name))
        frame = frame.select(exprs)
    return frame
