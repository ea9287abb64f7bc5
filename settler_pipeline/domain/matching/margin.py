"""Records read only as margin (``in_range`` false): which items of a result belong to the run.

A run reads ``date_window_days`` around its range so that settlement lag at the edges does not
create false exceptions; those margin records are counterparts, not the run's own records. An item
(a match, matched or proposed, or a duplicate group) belongs to the run when at least one of its
records is in range. The records of an item with none in range were read only as margin and are
reported as a margin record that stays unmatched is: reason ``outside_range``, no review item, not
counted in the summary. The match rate counts only the run's own source records.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from settler_pipeline.domain.matching.result import (
    REASON_OUTSIDE_RANGE,
    STATUS_MATCHED,
    STATUS_PROPOSED,
    UNMATCHED_SCHEMA,
    MatchResult,
)
from settler_pipeline.domain.matching.text_buffers import compacted

SIDES = ("source", "target")


def margin_lines(frame: pl.DataFrame) -> pl.Series:
    """The line numbers of ``frame``'s records read only as margin."""
    return frame.filter(~pl.col("in_range"))["line_number"]


MARGIN_COLUMNS = ("line_number", "record_id", "amount_minor", "currency", "occurred_at", "in_range")


def margin_records(frame: pl.DataFrame) -> pl.DataFrame:
    """The records of ``frame`` read only as margin, with what :func:`within_range` reads of them
    (every record it adds to ``unmatched`` is one of them), their text in buffers of their own."""
    return compacted(frame.filter(~pl.col("in_range")).select(MARGIN_COLUMNS))


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


def within_range(result: MatchResult, source: pl.DataFrame, target: pl.DataFrame) -> MatchResult:
    """``result`` as the run reports it: only the matches and duplicate groups with a record in range
    (``source`` and ``target``: the records it was made of, with ``in_range``, ``line_number``,
    ``record_id``, ``amount_minor``, ``currency`` and ``occurred_at``). The records of the others are
    added to ``unmatched`` with reason ``outside_range``, so every record stays in exactly one bucket;
    :attr:`MatchResult.source_in_range` is counted over the matches kept."""
    frames = {"source": source, "target": target}
    margin = {side: margin_lines(frame) for side, frame in frames.items()}
    if all(len(lines) == 0 for lines in margin.values()):
        return result  # the usual case: every record in range, every item the run's
    own = in_range_per_match(result.matches, "source", margin["source"]) + in_range_per_match(
        result.matches, "target", margin["target"]
    )
    # Only the few matches of margin records alone are gathered: a block's matches stay as they are
    # unless some must go (filtering them would copy every column of a million matches).
    mine = result.matches.select(own > 0).to_series()
    outside = result.matches.select("source_lines", "target_lines").filter(~mine)
    matches = result.matches if outside.height == 0 else result.matches.filter(mine)
    dups = result.duplicates.with_columns(
        _own=pl.when(pl.col("side") == "source")
        .then(_any_in_range(margin["source"]))
        .otherwise(_any_in_range(margin["target"]))
        .any()
        .over("side", "first_line_number")
    )
    lines = {
        side: pl.concat(
            [
                outside[f"{side}_lines"].explode().drop_nulls(),
                dups.filter(~pl.col("_own") & (pl.col("side") == side))["line_number"],
            ]
        )
        for side in SIDES
    }
    if all(len(found) == 0 for found in lines.values()):
        return replace(result, source_in_range=source_in_range(result.matches, margin["source"]))
    unmatched = pl.concat(
        [result.unmatched, *(_outside_range(frames[side], side, lines[side]) for side in SIDES)]
    ).sort("side", "line_number")
    return replace(
        result,
        matches=matches,
        unmatched=unmatched,
        duplicates=dups.filter(pl.col("_own")).drop("_own"),
        source_in_range=source_in_range(matches, margin["source"]),
    )


def _any_in_range(margin: pl.Series) -> pl.Expr:
    """Whether the duplicate row's extra occurrence or its first one is in range."""
    outside = margin.implode()
    return ~pl.col("line_number").is_in(outside) | ~pl.col("first_line_number").is_in(outside)


def _outside_range(frame: pl.DataFrame, side: str, lines: pl.Series) -> pl.DataFrame:
    """The records of ``frame`` on ``lines`` as unmatched rows with reason ``outside_range``."""
    return (
        frame.filter(pl.col("line_number").is_in(lines.implode()))
        .select(
            side=pl.lit(side),
            record_id=pl.col("record_id").cast(pl.String),
            line_number="line_number",
            amount_minor="amount_minor",
            currency="currency",
            occurred_at=pl.col("occurred_at").dt.convert_time_zone("UTC"),
            reason=pl.lit(REASON_OUTSIDE_RANGE),
            candidate_ids=pl.lit([], dtype=pl.List(pl.String)),
        )
        .with_columns(pl.lit(None, dtype=UNMATCHED_SCHEMA[c]).alias(c) for c in _CLOSEST)
        .select(list(UNMATCHED_SCHEMA))
        .cast(UNMATCHED_SCHEMA)  # type: ignore[arg-type]
    )


_CLOSEST = (
    "closest_id",
    "closest_amount_minor",
    "closest_currency",
    "closest_occurred_at",
    "closest_reference",
    "closest_rejection",
)
