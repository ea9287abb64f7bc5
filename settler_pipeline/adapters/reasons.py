"""Shared pieces of normalisation: the names of the intermediate and bookkeeping columns, and the
per-row reason expressions that say why a row is quarantined."""

from __future__ import annotations

import polars as pl

LINE_COL = "__settler_line_number__"
RAW_COL = "__settler_raw__"
PREFIX = "__settler_"  # prefix of intermediate columns


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
