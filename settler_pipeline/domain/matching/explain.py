"""Explained exceptions: for each unmatched record, the candidate that came closest and why it was
rejected.

The closest candidate is the counterpart of the hint that gave the record its reason (a near miss
through a reference or group key, or a tied competitor; of several, the nearest in amount, then in
days, then by line); without one, the record of the other side, matched or not, nearest in amount
(then days, then line) among those in the same currency within :data:`SEARCH_DAYS` days and
:data:`SEARCH_PERCENT` percent of the amount. Records with no such candidate have none.

The rejection is the first that applies of:

``matched_elsewhere``     the candidate is in a match with other records
``currency_differs``      the currencies differ
``reference_conflict``    both carry references and none of one contains one of the other
``amount_difference``     the amounts differ by more than any pass's tolerance allows
``date_outside_window``   the days are further apart than any pass's window allows
``tied``                  another candidate was as good (or too many were), so none was chosen
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import numpy as np
import polars as pl

from settler_pipeline.domain.matching.amount_date import without_conflicting_references
from settler_pipeline.domain.matching.config import FuzzyPass, MatchConfig, MatchPass, Tolerance
from settler_pipeline.domain.matching.nearest import nearest_counterparts
from settler_pipeline.domain.matching.tolerance import within_tolerance, within_window

SEARCH_DAYS: Final = 7
SEARCH_PERCENT: Final = Decimal(50)

MATCHED_ELSEWHERE: Final = "matched_elsewhere"
CURRENCY_DIFFERS: Final = "currency_differs"
REFERENCE_CONFLICT: Final = "reference_conflict"
AMOUNT_DIFFERENCE: Final = "amount_difference"
DATE_OUTSIDE_WINDOW: Final = "date_outside_window"
TIED: Final = "tied"
REJECTIONS: Final = (
    MATCHED_ELSEWHERE,
    CURRENCY_DIFFERS,
    REFERENCE_CONFLICT,
    AMOUNT_DIFFERENCE,
    DATE_OUTSIDE_WINDOW,
    TIED,
)

EXPLAINED_SCHEMA: dict[str, pl.DataType] = {
    "side": pl.String(),
    "line_number": pl.Int64(),
    "closest_line": pl.Int64(),
    "closest_rejection": pl.String(),
}


def _nearest(records: pl.DataFrame, others: pl.DataFrame) -> pl.DataFrame:
    """``(line_number, closest_line)``: per record, the nearest other-side record (see module doc)."""
    tolerance = Tolerance(percent=SEARCH_PERCENT)
    return nearest_counterparts(records, others, tolerance=tolerance, days=SEARCH_DAYS)


def _from_hints(wanted: pl.DataFrame, records: pl.DataFrame, others: pl.DataFrame) -> pl.DataFrame:
    """Per record, the hint counterpart nearest in amount, then days, then line."""
    pairs = (
        wanted.select("line_number", closest_line="counterparts")
        .explode("closest_line")
        .drop_nulls("closest_line")
        .join(
            records.filter(pl.col("line_number").is_in(wanted["line_number"].implode())).select(
                "line_number", _a="amount_minor", _d="day"
            ),
            on="line_number",
        )
        .join(others.select(closest_line="line_number", _oa="amount_minor", _od="day"), on="closest_line")
    )
    return (
        pairs.sort((pl.col("_oa") - pl.col("_a")).abs(), (pl.col("_od") - pl.col("_d")).abs(), "closest_line")
        .unique("line_number", keep="first")
        .select("line_number", "closest_line")
    )


def _rejection(
    pairs: pl.DataFrame, source: pl.DataFrame, target: pl.DataFrame, config: MatchConfig
) -> pl.DataFrame:
    """The rejection of each ``(source_line, target_line, _used)`` pair (see the module docstring)."""
    source = source.filter(pl.col("line_number").is_in(pairs["source_line"].unique().implode()))
    target = target.filter(pl.col("line_number").is_in(pairs["target_line"].unique().implode()))
    checked = pairs.join(
        source.select(source_line="line_number", _sa="amount_minor", _sd="day", _sc="currency"),
        on="source_line",
    ).join(
        target.select(target_line="line_number", _ta="amount_minor", _td="day", _tc="currency"),
        on="target_line",
    )
    s_amount, t_amount = checked["_sa"].to_numpy(), checked["_ta"].to_numpy()
    days = checked["_td"].to_numpy() - checked["_sd"].to_numpy()
    strict: list[MatchPass] = [p for p in config.passes if not isinstance(p, FuzzyPass)] or list(
        config.passes
    )
    amount_ok = np.zeros(checked.height, dtype=bool)
    date_ok = np.zeros(checked.height, dtype=bool)
    for match_pass in strict:
        amount_ok |= within_tolerance(s_amount, t_amount, match_pass.tolerance)
        date_ok |= within_window(days, match_pass.date_window)
    agreeing = without_conflicting_references(
        checked.select("source_line", "target_line"), source, target
    ).with_columns(_agree=pl.lit(True))
    checked = checked.with_columns(
        _amount_ok=pl.Series(amount_ok, dtype=pl.Boolean), _date_ok=pl.Series(date_ok, dtype=pl.Boolean)
    ).join(agreeing, on=["source_line", "target_line"], how="left")
    rejection = (
        pl.when(pl.col("_used"))
        .then(pl.lit(MATCHED_ELSEWHERE))
        .when(pl.col("_sc").ne_missing(pl.col("_tc")))
        .then(pl.lit(CURRENCY_DIFFERS))
        .when(pl.col("_agree").is_null())
        .then(pl.lit(REFERENCE_CONFLICT))
        .when(~pl.col("_amount_ok"))
        .then(pl.lit(AMOUNT_DIFFERENCE))
        .when(~pl.col("_date_ok"))
        .then(pl.lit(DATE_OUTSIDE_WINDOW))
        .otherwise(pl.lit(TIED))
    )
    return checked.select("source_line", "target_line", closest_rejection=rejection)


def explain_unmatched(
    wanted: pl.DataFrame,
    source: pl.DataFrame,
    target: pl.DataFrame,
    free_source: pl.Series,
    free_target: pl.Series,
    config: MatchConfig,
) -> pl.DataFrame:
    """:data:`EXPLAINED_SCHEMA` rows for the unmatched records in ``wanted`` (``side``,
    ``line_number`` and ``counterparts``: the hint counterparts, possibly empty).

    ``source`` and ``target`` are every record the passes saw (matched or not, the work frames);
    ``free_*`` the lines of those left unmatched (any other is in a match). A record without any
    candidate gets a null ``closest_line``."""
    parts: list[pl.DataFrame] = []
    for side, records, others in (("source", source, target), ("target", target, source)):
        mine = wanted.filter(pl.col("side") == side)
        if mine.height == 0:
            continue
        hinted = _from_hints(mine, records, others)
        rest = records.filter(
            pl.col("line_number").is_in(mine["line_number"].implode())
            & ~pl.col("line_number").is_in(hinted["line_number"].implode())
        )
        chosen = pl.concat([hinted, _nearest(rest, others)])
        oriented = (
            chosen.select(source_line="line_number", target_line="closest_line")
            if side == "source"
            else chosen.select(source_line="closest_line", target_line="line_number")
        )
        free = free_target if side == "source" else free_source
        closest = "target_line" if side == "source" else "source_line"
        oriented = oriented.with_columns(_used=~pl.col(closest).is_in(free.implode()))
        judged = _rejection(oriented, source, target, config)
        mine_col = "source_line" if side == "source" else "target_line"
        parts.append(
            mine.select("side", "line_number").join(
                judged.select(
                    line_number=mine_col, closest_line=closest, closest_rejection="closest_rejection"
                ),
                on="line_number",
                how="left",
            )
        )
    if not parts:
        return pl.DataFrame(schema=EXPLAINED_SCHEMA)
    return pl.concat(parts).cast(EXPLAINED_SCHEMA)  # type: ignore[arg-type]
