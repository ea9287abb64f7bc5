"""Records read only as margin (``in_range`` false): which of them a result counts.

A run reads ``date_window_days`` around its range so that settlement lag at the edges does not
create false exceptions; those margin records are counterparts, not the run's own records. The
match rate counts only the run's own source records (see docs/read-models.md).
"""

from __future__ import annotations

import polars as pl

from settler_pipeline.domain.matching.result import STATUS_MATCHED, STATUS_PROPOSED


def margin_lines(frame: pl.DataFrame) -> pl.Series:
    """The line numbers of ``frame``'s records read only as margin."""
    return frame.filter(~pl.col("in_range"))["line_number"]


def in_range_per_match(matches: pl.DataFrame, side: str, margin: pl.Series) -> pl.Expr:
    """Per match, how many of its ``side`` records are in the run's range (``margin``: the side's
    margin lines, see :func:`margin_lines`)."""
    lines = pl.col(f"{side}_lines")
    if len(margin) == 0:  # the usual case: nothing to look up
        return lines.list.len().cast(pl.Int64)
    outside = lines.list.eval(pl.element().is_in(margin.implode())).list.sum()
    return (lines.list.len() - outside).cast(pl.Int64)


def source_in_range(matches: pl.DataFrame, margin: pl.Series) -> dict[str, int]:
    """The run's own source records (in range) in ``matches``: ``matched`` (auto-confirmed) and
    ``proposed``; what the match rate counts (``margin``: the source's margin lines)."""
    n = in_range_per_match(matches, "source", margin)
    status = pl.col("status")
    row = matches.select(
        matched=pl.when(status == STATUS_MATCHED).then(n).otherwise(0).sum(),
        proposed=pl.when(status == STATUS_PROPOSED).then(n).otherwise(0).sum(),
    ).row(0, named=True)
    return {key: int(value or 0) for key, value in row.items()}
