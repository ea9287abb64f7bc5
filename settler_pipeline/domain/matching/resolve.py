"""Choosing among candidate pairs: mutual unique best, never "first candidate wins".

A pair is chosen when it is the strictly best candidate of its source *and* of its target. Chosen
records leave the pool and the rule is applied again, until nothing changes; this settles chains
such as "A prefers X, but X prefers B" without ever guessing. What is left at the fixed point is
held up by ties: each remaining record is ambiguous, and its best remaining counterparts are the
competing candidates a reviewer needs to see.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

HINT_PAIR_SCHEMA: dict[str, pl.DataType] = {
    "side": pl.String(),
    "line_number": pl.Int64(),
    "counterpart_line": pl.Int64(),
}


@dataclass(frozen=True)
class Resolution:
    """``chosen``: the selected pairs (all input columns); ``ambiguous``: per left-over record, its
    tied best counterparts (:data:`HINT_PAIR_SCHEMA`)."""

    chosen: pl.DataFrame
    ambiguous: pl.DataFrame


def resolve_mutual_best(pairs: pl.DataFrame, score_columns: list[str]) -> Resolution:
    """Select pairs that are each other's unique best, repeatedly (see the module docstring).

    ``pairs`` has ``source_line``, ``target_line`` (no repeated pair) and ``score_columns``, compared
    lexicographically, lower is better. The result is independent of the row order of ``pairs``.
    """
    counted = pairs.with_columns(
        _n_source=pl.len().over("source_line"), _n_target=pl.len().over("target_line")
    )
    # A pair whose records have no other candidate is trivially each other's unique best; taking
    # those first keeps the iterative part small (most pairs at scale are such pairs).
    lonely = (pl.col("_n_source") == 1) & (pl.col("_n_target") == 1)
    chosen: list[pl.DataFrame] = [counted.filter(lonely).drop("_n_source", "_n_target")]
    work = (
        counted.filter(~lonely)
        .drop("_n_source", "_n_target")
        .with_columns(_score=pl.struct(score_columns).rank("dense").cast(pl.Int64))
    )
    while work.height:
        flagged = work.with_columns(
            _s_best=pl.col("_score") == pl.col("_score").min().over("source_line"),
            _t_best=pl.col("_score") == pl.col("_score").min().over("target_line"),
        ).with_columns(
            _s_ties=pl.col("_s_best").sum().over("source_line"),
            _t_ties=pl.col("_t_best").sum().over("target_line"),
        )
        picked = flagged.filter(
            pl.col("_s_best") & pl.col("_t_best") & (pl.col("_s_ties") == 1) & (pl.col("_t_ties") == 1)
        )
        if picked.height == 0:
            break
        chosen.append(picked.select(pairs.columns))
        work = work.filter(
            ~pl.col("source_line").is_in(picked["source_line"].implode())
            & ~pl.col("target_line").is_in(picked["target_line"].implode())
        )

    best_source = work.filter(pl.col("_score") == pl.col("_score").min().over("source_line"))
    best_target = work.filter(pl.col("_score") == pl.col("_score").min().over("target_line"))
    ambiguous = pl.concat(
        [
            best_source.select(
                side=pl.lit("source"),
                line_number=pl.col("source_line"),
                counterpart_line=pl.col("target_line"),
            ),
            best_target.select(
                side=pl.lit("target"),
                line_number=pl.col("target_line"),
                counterpart_line=pl.col("source_line"),
            ),
        ]
    ).cast(HINT_PAIR_SCHEMA)  # type: ignore[arg-type]
    return Resolution(chosen=pl.concat(chosen), ambiguous=ambiguous)
