"""Reference normalisation: the rules that decide when two references are "the same".

A reference is normalised by removing every whitespace character, upper-casing it and then removing
the longest configured prefix it starts with (prefixes are normalised the same way). Leading zeros
are kept: ``INV-000123`` and ``INV-123`` are different invoices. A reference that is empty after
normalisation is null (it identifies nothing), and so is a *placeholder*: a value banks write where no
reference was given (``NOTPROVIDED``, ``NONREF``, ``N/A``, ``-``, ``0`` ...; see
:data:`DEFAULT_PLACEHOLDERS`), compared without case and punctuation, and any value of zeros only.

A record may carry several references: its ``reference`` and the list ``references`` (further
reference columns, references extracted from text). Each counts on its own.

Descriptions (bank memos) are searched token by token. A token is a run of letters and digits,
possibly joined by ``-``, ``_``, ``/``, ``.``, ``:``, ``;`` or ``,`` (``RE/INV-00123/2026``); each
whole token is a candidate, and so is every piece of it between punctuation (``RE``, ``INV-00123``,
``2026``) and, splitting at ``-`` as well, every smaller piece (``INV``, ``00123``). Each candidate is
normalised like a reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import polars as pl

TOKEN_PATTERN = r"[A-Za-z0-9]+(?:[-_/.:;,][A-Za-z0-9]+)*"

DEFAULT_PLACEHOLDERS: Final = (
    "NOTPROVIDED",
    "NONREF",
    "NOREF",
    "NOREFERENCE",
    "NONE",
    "N/A",
    "NA",
    "NULL",
    "NIL",
    "UNKNOWN",
    "-",
    "0",
)
"""Values treated as "no reference" on both sides (compared without case and punctuation); values of
zeros only are placeholders too."""


_NOT_ALNUM = r"[^\p{L}\p{N}]*"
_WHITESPACE: Final = [
    *"\t\n\x0b\x0c\r \x85\xa0\u1680",
    *(chr(c) for c in range(0x2000, 0x200B)),
    *"\u2028\u2029\u202f\u205f\u3000",
]
"""Every character the regular expression ``\\s`` matches (Unicode ``White_Space``)."""


def placeholder_keys(values: Iterable[str]) -> list[str]:
    """Placeholder values without case and punctuation: upper case, letters and digits only (empties
    dropped)."""
    keys = {re.sub(r"[^\w]|_", "", v.upper()) for v in values}
    keys.discard("")
    return sorted(keys)


def placeholder_pattern(extra: Iterable[str] = ()) -> str:
    """One anchored, case-insensitive regular expression matching every placeholder (the default list
    plus ``extra``) written with any punctuation or spaces around or between its characters, and
    values of punctuation or zeros only. A single pass of the regex engine per value: far cheaper
    than normalising every value first."""
    keys = placeholder_keys([*DEFAULT_PLACEHOLDERS, *extra])
    spelled = [_NOT_ALNUM.join(re.escape(c) for c in key) for key in sorted(keys, key=lambda k: (-len(k), k))]
    zeros = f"(?:0{_NOT_ALNUM})*"
    return f"(?i)^{_NOT_ALNUM}(?:{'|'.join(spelled)}|{zeros}){_NOT_ALNUM}$"


def without_placeholders(expr: pl.Expr, extra: Iterable[str] = ()) -> pl.Expr:
    """``expr`` with placeholder values (the default list plus ``extra``), blanks and values of
    punctuation or zeros only replaced by null."""
    return pl.when(~expr.str.contains(placeholder_pattern(extra))).then(expr)


def without_placeholder_entries(lists: pl.Series, extra: Iterable[str] = ()) -> pl.Series:
    """A list column with placeholder entries (and nulls) removed; untouched when it has none, which
    is the common case and saves a per-list evaluation."""
    flat = lists.explode()
    # Exploding makes a null or empty list one null value: compare counts to see null entries.
    null_entries = int(lists.list.len().sum() or 0) != flat.count()
    if not (null_entries or flat.str.contains(placeholder_pattern(extra)).any()):
        return lists
    cleaned = pl.select(lists.list.eval(without_placeholders(pl.element(), extra)).list.drop_nulls())
    return cleaned.to_series().alias(lists.name)


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


def reference_values(records: pl.DataFrame) -> pl.DataFrame:
    """One row ``(line_number, value)`` per reference a record carries (its ``reference`` and each
    entry of ``references``), as written; nulls dropped."""
    single = records.select("line_number", value=pl.col("reference"))
    if "references" not in records.columns:
        return single.drop_nulls("value")
    several = (
        records.select("line_number", value=pl.col("references"))
        .filter(pl.col("value").list.len() > 0)
        .explode("value")
    )
    return pl.concat([single, several]).drop_nulls("value")


def reference_keys(records: pl.DataFrame, prefixes: Iterable[str]) -> pl.DataFrame:
    """One row ``(line_number, key)`` per normalised reference of each record (a record whose
    references normalise alike has that key more than once: callers pair by key)."""
    values = reference_values(records)
    # Whitespace inside a reference is rare: only values that hold any go through the replacement.
    if values["value"].str.contains_any(_WHITESPACE).any():
        values = values.with_columns(pl.col("value").str.replace_all(r"\s+", ""))
    keys = values.select("line_number", key=_strip_prefix(pl.col("value").str.to_uppercase(), prefixes))
    return keys.filter(pl.col("key") != "")


_NOT_A_WORD = r"[^A-Z0-9 ]"
"""A character that makes an upper-cased memo more than words and spaces: one a token may hold
(joiners), or one that ends a token."""
_SPLIT_AT = r"[/.:;,]"


def description_tokens(
    records: pl.DataFrame,
    column: str,
    prefixes: Iterable[str],
    *,
    min_length: int,
    among: pl.Expr | None = None,
) -> pl.DataFrame:
    """One row ``(line_number, key)`` per token of ``records[column]`` (whole tokens and their
    pieces, see the module docstring) that has at least ``min_length`` characters as written (so
    stray short numbers such as amounts or dates are ignored), each normalised like a reference;
    empty results are dropped. ``among``: see :func:`normalised_tokens`."""
    return normalised_tokens(memo_tokens(records, column, min_length=min_length), prefixes, among)


def memo_tokens(records: pl.DataFrame, column: str, *, min_length: int) -> pl.DataFrame:
    """:func:`description_tokens` as written (upper-cased), before their prefixes are removed."""
    memos = records.select("line_number", memo=pl.col(column).str.to_uppercase()).drop_nulls("memo")
    # Most memos are words and spaces ("PAYMENT FROM ANNA SMITH"): their tokens are the pieces
    # between spaces, which a literal split finds at a fraction of the regex's cost, and none of
    # them has pieces.
    punctuated = memos["memo"].str.contains(_NOT_A_WORD)
    words = memos.filter(~punctuated).select("line_number", key=pl.col("memo").str.split(" ")).explode("key")
    whole = (
        memos.filter(punctuated)
        .select("line_number", key=pl.col("memo").str.extract_all(TOKEN_PATTERN))
        .explode("key")
        .drop_nulls("key")
    )
    # Only tokens with punctuation inside have pieces. Pieces differ from the token they come from,
    # so no step below repeats a (line, token) of an earlier one.
    pieces = (
        whole.filter(pl.col("key").str.contains(_SPLIT_AT))
        .select("line_number", key=pl.col("key").str.replace_all(_SPLIT_AT, "\x1f").str.split("\x1f"))
        .explode("key")
    )
    dashed = pl.concat([whole.filter(~pl.col("key").str.contains(_SPLIT_AT)), pieces]).filter(
        pl.col("key").str.contains("-", literal=True)
    )
    smallest = dashed.select("line_number", key=pl.col("key").str.split("-")).explode("key")
    # Tokens are ASCII letters, digits and joiners, so their length in bytes is their length; no
    # token is empty (the split leaves empties between repeated spaces).
    tokens = pl.concat([words, whole, pieces, smallest]).filter(
        pl.col("key").str.len_bytes() >= max(min_length, 1)
    )
    return tokens


def normalised_tokens(tokens: pl.DataFrame, prefixes: Iterable[str], among: pl.Expr | None) -> pl.DataFrame:
    """:func:`memo_tokens` with the longest configured prefix removed from each ``key`` and empties
    dropped. ``among``: a condition on ``key`` true for every key the caller can use (pairing only on
    keys the other side has); keys it is false for may be left out. Only the few keys that start
    with a prefix go through the replacement."""
    ordered = normalise_prefixes(prefixes)
    if not ordered:
        return tokens if among is None else tokens.filter(among)
    prefixed = pl.col("key").str.contains("^(?:" + "|".join(re.escape(p) for p in ordered) + ")")
    return pl.concat(
        [
            tokens.filter(~prefixed if among is None else ~prefixed & among),
            tokens.filter(prefixed)
            .with_columns(key=_empty_to_null(_strip_prefix(pl.col("key"), ordered)))
            .drop_nulls("key"),
        ]
    )


def check_pattern(pattern: str, *, max_length: int) -> str | None:
    """Why ``pattern`` cannot serve as a reference pattern, or None when it can.

    Patterns run on Polars' regex engine, which has no backtracking (matching time is linear in the
    text, so no pattern can hang a run) and a compiled-size limit; a pattern must be at most
    ``max_length`` characters, compile, and not match the empty string (it would find "references"
    everywhere).
    """
    if not pattern:
        return "is empty"
    if len(pattern) > max_length:
        return f"is longer than {max_length} characters"
    try:
        probe = pl.Series(["", "x"], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.PolarsError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        return f"is not a valid regular expression: {detail[:300]}"
    if probe[0]:
        return "matches the empty string; describe what a reference looks like, e.g. INV-?\\d+"
    return None


def pattern_references(expr: pl.Expr, patterns: Iterable[str]) -> pl.Expr:
    """A list of every match of any of ``patterns`` in ``expr`` (checked with :func:`check_pattern`)."""
    found = [expr.str.extract_all(p) for p in patterns]
    if not found:
        return pl.lit(None, dtype=pl.List(pl.String))
    return pl.concat_list(*[f.fill_null(pl.lit([], dtype=pl.List(pl.String))) for f in found])
