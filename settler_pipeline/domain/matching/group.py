"""The group pass: several records on one side settled as one record on the other.

many_to_one: remaining source records with a group key are summed per (normalised group key,
currency); a group's day is its latest record's day. The group is matched to one remaining target
whose normalised reference or group key equals the group key, or (``search_in_description``) whose
description has it as a token (a memo such as ``STRIPE PAYOUT po_1PqR...``), or
(``match_by_amount``) any target; always with the same currency, the sum within tolerance and the
target's day within the window of the group's day. one_to_many is the mirror: remaining target
records grouped by their group key, matched to one source. ``both`` runs many_to_one first.

A group of one record is allowed when its key names the counterpart (a payout holding a single
charge); its match is ``one_to_one``. Matching by sum alone (``match_by_amount``) needs a group of at
least two records, and such a match is only proposed when another candidate had the same amount
difference (dates alone told them apart).
Among fitting candidates the mutual unique best wins (key in a reference or group key field, then
key in a description, then amount only; then smaller amount difference; then fewer days); ties stay
ambiguous. A key pair that fails currency, amount or date is a near miss for every record of both
units. Confidence: 0.95.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from settler_pipeline.domain.matching.candidates import window_candidates
from settler_pipeline.domain.matching.config import GroupPass
from settler_pipeline.domain.matching.normalise import description_tokens, normalise_key, reference_values
from settler_pipeline.domain.matching.outcome import (
    HINT_SCHEMA,
    PASS_MATCH_SCHEMA,
    PassOutcome,
    ambiguous_hints,
    hints_from_pairs,
    mismatch_reason,
)
from settler_pipeline.domain.matching.pairs import attach_checks, keyed_pairs, with_fit_checks
from settler_pipeline.domain.matching.resolve import resolve_mutual_best

GROUP_CONFIDENCE = 0.95
_MIN_KEY_TOKEN = 4
_VIA_FIELD, _VIA_DESCRIPTION, _VIA_AMOUNT = 0, 1, 2


def _groups(records: pl.DataFrame) -> pl.DataFrame:
    """Units of records sharing (normalised group key, currency); a unit is named by its first line."""
    return (
        records.with_columns(key=normalise_key(pl.col("group_key")))
        .drop_nulls("key")
        .group_by("key", "currency")
        .agg(
            line_number=pl.col("line_number").min(),
            lines=pl.col("line_number").sort(),
            amount_minor=pl.col("amount_minor").sum(),
            day=pl.col("day").max(),
        )
    )


def _single_keys(records: pl.DataFrame, search_in_description: bool) -> pl.DataFrame:
    parts = [
        records.select(
            "line_number", key=normalise_key(pl.col("group_key")), via=pl.lit(_VIA_FIELD, dtype=pl.Int64)
        ),
        reference_values(records).select(
            "line_number", key=normalise_key(pl.col("value")), via=pl.lit(_VIA_FIELD, dtype=pl.Int64)
        ),
    ]
    if search_in_description:
        parts.append(
            description_tokens(records, "description", [], min_length=_MIN_KEY_TOKEN).with_columns(
                via=pl.lit(_VIA_DESCRIPTION, dtype=pl.Int64)
            )
        )
    return pl.concat(parts).drop_nulls("key")


def _expand(hints: pl.DataFrame, source_units: pl.DataFrame, target_units: pl.DataFrame) -> pl.DataFrame:
    """Hints about units become hints about each of their records (and each counterpart record)."""
    members = pl.concat(
        [
            source_units.select(side=pl.lit("source"), unit="line_number", member="lines"),
            target_units.select(side=pl.lit("target"), unit="line_number", member="lines"),
        ]
    ).explode("member")
    other = members.with_columns(
        side=pl.when(pl.col("side") == "source").then(pl.lit("target")).otherwise(pl.lit("source"))
    ).rename({"unit": "counterpart_line", "member": "counterpart_member"})
    expanded = hints.join(members, left_on=["side", "line_number"], right_on=["side", "unit"]).join(
        other, on=["side", "counterpart_line"], how="left"
    )
    return expanded.select(
        "side",
        line_number="member",
        reason="reason",
        rank="rank",
        counterpart_line="counterpart_member",
    ).cast(HINT_SCHEMA)  # type: ignore[arg-type]


def _match_groups(
    source: pl.DataFrame, target: pl.DataFrame, config: GroupPass, grouped: Literal["source", "target"]
) -> PassOutcome:
    if grouped == "source":
        source_units = _groups(source)
        target_units = target.select(
            "line_number", "amount_minor", "currency", "day", lines=pl.concat_list("line_number")
        )
        single_keys = _single_keys(target, config.search_in_description)
        key_pairs = keyed_pairs(
            source_units.select("line_number", "key"), single_keys, max_candidates=config.max_candidates
        )
    else:
        target_units = _groups(target)
        source_units = source.select(
            "line_number", "amount_minor", "currency", "day", lines=pl.concat_list("line_number")
        )
        single_keys = _single_keys(source, config.search_in_description)
        key_pairs = keyed_pairs(
            target_units.select("line_number", "key"),
            single_keys,
            max_candidates=config.max_candidates,
            names=("target_line", "source_line"),
        )
    if source_units.height == 0 or target_units.height == 0:
        return PassOutcome(pl.DataFrame(schema=PASS_MATCH_SCHEMA), pl.DataFrame(schema=HINT_SCHEMA))

    pair_parts = [key_pairs.select("source_line", "target_line", "via")]
    if config.match_by_amount:
        window = config.date_window
        # Only real groups may match on their sum alone: a "group" of one record is a single record,
        # and amount + date matching of single records belongs to the amount + date pass with its
        # ambiguity safeguards.
        grouped_units = source_units if grouped == "source" else target_units
        real = grouped_units.filter(pl.col("lines").list.len() >= 2)
        by_amount = window_candidates(
            real if grouped == "source" else source_units,
            real if grouped == "target" else target_units,
            tolerance=config.tolerance,
            days_before=window.days_before,
            days_after=window.days_after,
            max_candidates=config.max_candidates,
        ).pairs
        pair_parts.append(
            by_amount.select("source_line", "target_line", via=pl.lit(_VIA_AMOUNT, dtype=pl.Int64))
        )
    pairs = pl.concat(pair_parts).group_by("source_line", "target_line").agg(pl.col("via").min())
    pairs = with_fit_checks(
        attach_checks(pairs, source_units, target_units), config.tolerance, config.date_window
    )

    fits = pl.col("currency_ok") & pl.col("amount_ok") & pl.col("date_ok")
    resolution = resolve_mutual_best(
        pairs.filter(fits).with_columns(
            abs_amount=pl.col("amount_difference").abs(), abs_days=pl.col("day_difference").abs()
        ),
        ["via", "abs_amount", "abs_days"],
    )
    # A pair found by its sum alone, when the unit or the counterpart had another candidate with the
    # same amount difference, was told apart by dates only: proposed, never auto-confirmed.
    amount_only = pairs.filter(fits & (pl.col("via") == _VIA_AMOUNT)).select(
        "source_line",
        "target_line",
        _n_source=pl.len().over("source_line", pl.col("amount_difference").abs()),
        _n_target=pl.len().over("target_line", pl.col("amount_difference").abs()),
    )
    chosen = resolution.chosen.join(amount_only, on=["source_line", "target_line"], how="left").with_columns(
        _confirm=~((pl.col("via") == _VIA_AMOUNT) & ((pl.col("_n_source") > 1) | (pl.col("_n_target") > 1)))
    )
    chosen = chosen.join(
        source_units.select(source_line="line_number", source_lines="lines"), on="source_line"
    ).join(target_units.select(target_line="line_number", target_lines="lines"), on="target_line")
    matches = chosen.select(
        "source_lines",
        "target_lines",
        confidence=pl.lit(GROUP_CONFIDENCE, dtype=pl.Float64),
        matched_fields=pl.when(pl.col("via") == _VIA_FIELD)
        .then(pl.lit(["group_key", "amount", "date"]))
        .when(pl.col("via") == _VIA_DESCRIPTION)
        .then(pl.lit(["group_key", "description", "amount", "date"]))
        .otherwise(pl.lit(["amount", "date"])),
        confirm=pl.col("_confirm"),
    ).cast(PASS_MATCH_SCHEMA)  # type: ignore[arg-type]
    near_misses = hints_from_pairs(
        pairs.filter(~fits), mismatch_reason(pl.col("currency_ok"), pl.col("amount_ok"), pl.col("date_ok"))
    )
    hints = _expand(
        pl.concat([ambiguous_hints(resolution.ambiguous), near_misses]), source_units, target_units
    )
    return PassOutcome(matches=matches, hints=hints)


def run_group_pass(source: pl.DataFrame, target: pl.DataFrame, config: GroupPass) -> PassOutcome:
    """Match groups through their group key or their sum (see the module docstring)."""
    outcomes: list[PassOutcome] = []
    if config.direction in ("many_to_one", "both"):
        outcomes.append(_match_groups(source, target, config, "source"))
        used = outcomes[-1].matches
        source = source.filter(~pl.col("line_number").is_in(used["source_lines"].explode().implode()))
        target = target.filter(~pl.col("line_number").is_in(used["target_lines"].explode().implode()))
    if config.direction in ("one_to_many", "both"):
        outcomes.append(_match_groups(source, target, config, "target"))
    return PassOutcome(
        matches=pl.concat([o.matches for o in outcomes]), hints=pl.concat([o.hints for o in outcomes])
    )
