"""Shared pieces of reading and normalisation: the names of the intermediate and bookkeeping columns,
the row as JSON for audit, and the per-row reason expressions that say why a row is quarantined."""

from __future__ import annotations

import polars as pl

LINE_COL = "__settler_line_number__"
RAW_COL = "__settler_raw__"
PREFIX = "__settler_"  # prefix of intermediate columns


LISTED_COLUMNS = 50  # an error names at most this many of a file's columns
LISTED_NAME = 60  # characters of each


def column_listing(names: list[str]) -> str:
    """A file's column names for an error message, kept short whatever the file holds: at most
    :data:`LISTED_COLUMNS` names of at most :data:`LISTED_NAME` characters each (a header line of a
    megabyte, or of 100,000 columns, is named, not echoed)."""
    if not names:
        return "(none)"
    shown = [n if len(n) <= LISTED_NAME else f"{n[: LISTED_NAME - 1]}… ({len(n)} characters)" for n in names]
    more = len(shown) - LISTED_COLUMNS
    return ", ".join(shown[:LISTED_COLUMNS]) + (f" and {more} more" if more > 0 else "")


def quoted(field: str, value: pl.Expr, message: str) -> pl.Expr:
    """``<field>: '<value>' <message>``, the reason text naming the offending value."""
    # concat_str, not pl.format: the values are data and may contain braces.
    return pl.concat_str(pl.lit(f"{field}: '"), value, pl.lit(f"' {message}"))


def first_reason(cases: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
    """The message of the first condition that holds on each row, else null."""
    reason = pl.lit(None, dtype=pl.String)
    for condition, message in reversed(cases):
        reason = pl.when(condition).then(message).otherwise(reason)
    return reason


def sparse_reason(frame: pl.DataFrame, cases: list[tuple[pl.Expr, pl.Expr]]) -> pl.Series:
    """:func:`first_reason` of ``cases`` on every row of ``frame``, each message built only on the rows
    where one of the conditions holds: usually none, and an expression's message is otherwise built
    for every row whether it is used or not (it cost more than the parse it reported on). Conditions
    and messages read ``frame``'s columns only, row by row."""
    held = frame.select(pl.any_horizontal([c.fill_null(False) for c, _ in cases])).to_series().arg_true()
    reason = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    if held.len() == 0:
        return reason
    names = sorted({name for case in cases for expr in case for name in expr.meta.root_names()})
    rows = frame.select(names)[held] if names else frame[held]
    return reason.scatter(held, rows.select(first_reason(cases)).to_series())


def raw_json(table: pl.DataFrame) -> pl.Expr:
    """Each row of a read table as the JSON kept for audit: :data:`RAW_COL` where the reader kept the
    original text (a JSON line), else a JSON object of the row's string columns. Derived only for the
    rows that need it (quarantined ones): for a million valid rows it would cost more time and memory
    than the data itself."""
    if RAW_COL in table.columns:
        return pl.col(RAW_COL)
    columns = [c for c in table.columns if c != LINE_COL]
    return pl.struct(columns).struct.json_encode() if columns else pl.lit("{}")
