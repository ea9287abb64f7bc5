"""What one pass hands back to the matcher: its matches and its hints for unmatched records.

A pass sees only records no earlier pass used. Its ``matches`` name records by line number; the
matcher adds ids, amounts, dates and match ids. Its ``hints`` say why a record *might* end unmatched
(a near-miss counterpart, or a tie): the matcher keeps, per record, the hint of the earliest pass and,
within a pass, the lowest ``rank``, ignoring hints whose counterpart ended up matched elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from settler_pipeline.domain.matching.result import (
    REASON_AMBIGUOUS,
    REASON_AMOUNT_MISMATCH,
    REASON_CURRENCY_MISMATCH,
    REASON_DATE_MISMATCH,
)

PASS_MATCH_SCHEMA: dict[str, pl.DataType] = {
    "source_lines": pl.List(pl.Int64()),
    "target_lines": pl.List(pl.Int64()),
    "confidence": pl.Float64(),
    "matched_fields": pl.List(pl.String()),
    # False: the pass found this pair but asks for review even when it auto-confirms (e.g. the
    # amount + date pass when only the dates told two candidates apart).
    "confirm": pl.Boolean(),
}

HINT_SCHEMA: dict[str, pl.DataType] = {
    "side": pl.String(),
    "line_number": pl.Int64(),
    "reason": pl.String(),
    "rank": pl.Int64(),  # within a pass, lower wins
    "counterpart_line": pl.Int64(),  # null: no specific counterpart (e.g. too many candidates)
}

# Within one pass: a tie among fitting candidates says more than a near miss, and a near miss on
# currency more than one on amount, which says more than one on date.
REASON_RANK: dict[str, int] = {
    REASON_AMBIGUOUS: 0,
    REASON_CURRENCY_MISMATCH: 1,
    REASON_AMOUNT_MISMATCH: 2,
    REASON_DATE_MISMATCH: 3,
}

WORK_COLUMNS = (
    "line_number",
    "record_id",
    "amount_minor",
    "currency",
    "day",
    "reference",
    "description",
    "counterparty",
    "group_key",
    "references",
)
"""Columns of the frames passes receive; ``day`` is the UTC calendar day as days since 1970-01-01."""


@dataclass(frozen=True)
class PassOutcome:
    """Matches (:data:`PASS_MATCH_SCHEMA`) and hints (:data:`HINT_SCHEMA`) of one pass."""

    matches: pl.DataFrame
    hints: pl.DataFrame


def empty_matches() -> pl.DataFrame:
    """A match frame with no rows."""
    return pl.DataFrame(schema=PASS_MATCH_SCHEMA)


def empty_hints() -> pl.DataFrame:
    """A hint frame with no rows."""
    return pl.DataFrame(schema=HINT_SCHEMA)


def one_to_one_matches(
    chosen: pl.DataFrame, confidence: pl.Expr, fields: pl.Expr, confirm: pl.Expr | None = None
) -> pl.DataFrame:
    """Match rows for chosen ``source_line``/``target_line`` pairs."""
    return chosen.select(
        source_lines=pl.concat_list(pl.col("source_line")),
        target_lines=pl.concat_list(pl.col("target_line")),
        confidence=confidence.cast(pl.Float64),
        matched_fields=fields,
        confirm=pl.lit(True) if confirm is None else confirm,
    ).cast(PASS_MATCH_SCHEMA)  # type: ignore[arg-type]


def hints_from_pairs(pairs: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    """Hints for both records of each ``source_line``/``target_line`` pair, with ``reason`` per pair
    (rows whose reason is null are dropped)."""
    tagged = pairs.select("source_line", "target_line", reason=reason).drop_nulls("reason")
    rank = pl.col("reason").replace_strict(REASON_RANK, return_dtype=pl.Int64)
    both = pl.concat(
        [
            tagged.select(
                side=pl.lit("source"),
                line_number=pl.col("source_line"),
                reason=pl.col("reason"),
                rank=rank,
                counterpart_line=pl.col("target_line"),
            ),
            tagged.select(
                side=pl.lit("target"),
                line_number=pl.col("target_line"),
                reason=pl.col("reason"),
                rank=rank,
                counterpart_line=pl.col("source_line"),
            ),
        ]
    )
    return both.cast(HINT_SCHEMA)  # type: ignore[arg-type]


def ambiguous_hints(ambiguous: pl.DataFrame, crowded_source_lines: pl.Series | None = None) -> pl.DataFrame:
    """Hints for records left in ties (from :func:`resolve_mutual_best`) and for source records with
    too many candidates to consider (no specific counterpart)."""
    parts = [
        ambiguous.select(
            "side",
            "line_number",
            reason=pl.lit(REASON_AMBIGUOUS),
            rank=pl.lit(REASON_RANK[REASON_AMBIGUOUS], dtype=pl.Int64),
            counterpart_line="counterpart_line",
        )
    ]
    if crowded_source_lines is not None and len(crowded_source_lines):
        parts.append(
            pl.DataFrame({"line_number": crowded_source_lines}).select(
                side=pl.lit("source"),
                line_number=pl.col("line_number"),
                reason=pl.lit(REASON_AMBIGUOUS),
                rank=pl.lit(REASON_RANK[REASON_AMBIGUOUS], dtype=pl.Int64),
                counterpart_line=pl.lit(None, dtype=pl.Int64),
            )
        )
    return pl.concat([p.cast(HINT_SCHEMA) for p in parts])  # type: ignore[arg-type]


def mismatch_reason(currency_ok: pl.Expr, amount_ok: pl.Expr, date_ok: pl.Expr) -> pl.Expr:
    """The reason a near-miss pair failed (first failing check: currency, amount, date); null if none."""
    return (
        pl.when(~currency_ok)
        .then(pl.lit(REASON_CURRENCY_MISMATCH))
        .when(~amount_ok)
        .then(pl.lit(REASON_AMOUNT_MISMATCH))
        .when(~date_ok)
        .then(pl.lit(REASON_DATE_MISMATCH))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def still_possible(
    hints: pl.DataFrame, remaining_source: pl.DataFrame, remaining_target: pl.DataFrame
) -> pl.DataFrame:
    """``hints`` about records still unmatched whose counterpart (if any) is still unmatched too: the
    only ones the matcher's reasons can use once fewer records remain, so the others are let go after
    each pass (a large block's first passes leave millions of hints about records they matched)."""
    left = {
        "source": remaining_source["line_number"].implode(),
        "target": remaining_target["line_number"].implode(),
    }
    is_source = pl.col("side") == "source"
    mine = pl.when(is_source).then(pl.col("line_number").is_in(left["source"]))
    theirs = pl.when(is_source).then(pl.col("counterpart_line").is_in(left["target"]))
    return hints.filter(
        mine.otherwise(pl.col("line_number").is_in(left["target"]))
        & (
            pl.col("counterpart_line").is_null()
            | theirs.otherwise(pl.col("counterpart_line").is_in(left["source"]))
        )
    )


def remaining_lines(remaining_source: pl.DataFrame, remaining_target: pl.DataFrame) -> pl.DataFrame:
    """(side, line_number) of the records still unmatched on either side."""
    return pl.concat(
        [
            remaining_source.select(side=pl.lit("source"), line_number="line_number"),
            remaining_target.select(side=pl.lit("target"), line_number="line_number"),
        ]
    )


def live_hints(hints: pl.DataFrame, remaining: pl.DataFrame) -> pl.DataFrame:
    """Hints about records still unmatched whose counterpart (if any) is still unmatched too."""
    other_side = pl.when(pl.col("side") == "source").then(pl.lit("target")).otherwise(pl.lit("source"))
    counterparts_left = remaining.select(
        other=pl.col("side"), counterpart_line="line_number", _left=pl.lit(True)
    )
    return (
        hints.join(remaining, on=["side", "line_number"], how="semi")
        .with_columns(other=other_side)
        .join(counterparts_left, on=["other", "counterpart_line"], how="left")
        .filter(pl.col("counterpart_line").is_null() | pl.col("_left").fill_null(False))
        .drop("_left")
    )


def held_by_near_misses(
    hints: pl.DataFrame, remaining_source: pl.DataFrame, remaining_target: pl.DataFrame
) -> pl.DataFrame:
    """(side, line_number) of records tied by an earlier key to a counterpart that is still free."""
    near_miss = pl.col("reason").is_in(
        [REASON_AMOUNT_MISMATCH, REASON_DATE_MISMATCH, REASON_CURRENCY_MISMATCH]
    )
    live = live_hints(
        hints.filter(near_miss & pl.col("counterpart_line").is_not_null()),
        remaining_lines(remaining_source, remaining_target),
    )
    return live.select("side", "line_number").unique()
