"""Reference normalisation: the rules that decide when two references are "the same".

A reference is normalised by removing every whitespace character, upper-casing it and then removing
the longest configured prefix it starts with (prefixes are normalised the same way). Leading zeros
are kept: ``INV-000123`` and ``INV-123`` are different invoices. A reference that is empty after
normalisation is null (it identifies nothing).

Descriptions (bank memos) are searched token by token: a token is a run of letters and digits,
possibly joined by ``-``, ``_``, ``/`` or ``.`` (``INV-000123``, ``po_1PqR``); each token is
normalised like a reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

TOKEN_PATTERN = r"[A-Za-z0-9]+(?:[-_/.][A-Za-z0-9]+)*"


def normalise_prefixes(prefixes: Iterable[str]) -> list[str]:
    """Prefixes normalised like references, duplicates and empties dropped, longest first (so
    ``INV-`` is removed before ``INV`` would leave a dangling ``-``)."""
    cleaned = {"".join(p.split()).upper() for p in prefixes}
    cleaned.discard("")
    return sorted(cleaned, key=lambda p: (-len(p), p))


def _strip_prefix(expr: pl.Expr, prefixes: Iterable[str]) -> pl.Expr:
    ordered = normalise_prefixes(prefixes)
    if not ordered:
        return expr
    # One anchored alternation: the regex engine takes the first alternative that matches, and the
    # alternatives are longest first, so the longest matching prefix is the one removed.
    return expr.str.replace("^(?:" + "|".join(re.escape(p) for p in ordered) + ")", "")


def _empty_to_null(expr: pl.Expr) -> pl.Expr:
    return expr.replace("", None)


def normalise_key(expr: pl.Expr) -> pl.Expr:
    """Remove all whitespace and upper-case; empty becomes null. Used for group keys."""
    return _empty_to_null(expr.str.replace_all(r"\s+", "").str.to_uppercase())


def normalise_reference(expr: pl.Expr, prefixes: Iterable[str]) -> pl.Expr:
    """:func:`normalise_key` followed by removal of the longest matching configured prefix."""
    return _empty_to_null(_strip_prefix(expr.str.replace_all(r"\s+", "").str.to_uppercase(), prefixes))


def description_tokens(
    records: pl.DataFrame, column: str, prefixes: Iterable[str], *, min_length: int
) -> pl.DataFrame:
    """One row ``(line_number, key)`` per token of ``records[column]`` that has at least
    ``min_length`` characters as written (so stray short numbers such as amounts or dates are
    ignored), each normalised like a reference; empty results are dropped."""
    tokens = (
        records.select("line_number", key=pl.col(column).str.to_uppercase().str.extract_all(TOKEN_PATTERN))
        .explode("key")
        .filter(pl.col("key").str.len_chars() >= min_length)
    )
    return tokens.with_columns(key=_empty_to_null(_strip_prefix(pl.col("key"), prefixes))).drop_nulls("key")
