"""The split pass: one record settled by several on the other side through a shared reference
(an invoice paid in instalments that each name it), or several settled by one.

Links come from normalised references (every reference of a record; on the target side also the
tokens of its memo, as in the reference pass). For ``one_to_many`` each target links to exactly one
source (a target naming two sources is left alone), and a source is considered only when none of
its linked targets is contested; its 2..``max_parts`` targets in its currency and date window form
its parts. ``many_to_one`` is the mirror. The split matches when the sum of the parts is within
tolerance of the single record (confidence 0.93, auto-confirmed with ``auto_confirm``); with
``propose_partial``, a sum of the same sign that falls short (a part payment) is proposed for review
(confidence 0.6, ``partial`` among the matched fields); any other sum is an ``amount_mismatch`` near
miss for every record involved.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from settler_pipeline.domain.matching.config import SplitPass
from settler_pipeline.domain.matching.normalise import description_tokens, reference_keys
from settler_pipeline.domain.matching.outcome import (
    PASS_MATCH_SCHEMA,
    PassOutcome,
    empty_hints,
    empty_matches,
    hints_from_pairs,
)
from settler_pipeline.domain.matching.pairs import attach_checks, keyed_pairs
from settler_pipeline.domain.matching.result import REASON_AMOUNT_MISMATCH
from settler_pipeline.domain.matching.tolerance import within_tolerance, within_window

SPLIT_CONFIDENCE = 0.93
PARTIAL_CONFIDENCE = 0.6


def _linked_pairs(source: pl.DataFrame, target: pl.DataFrame, config: SplitPass) -> pl.DataFrame:
    """Pairs sharing a reference, same currency, inside the window (with amounts and days)."""
    prefixes = config.strip_prefixes
    target_parts = [reference_keys(target, prefixes)]
    if config.search_in_description:
        target_parts.append(
            description_tokens(target, "description", prefixes, min_length=config.min_token_length)
        )
    target_keys = pl.concat(target_parts).unique().with_columns(via=pl.lit(0, dtype=pl.Int64))
    pairs = keyed_pairs(reference_keys(source, prefixes), target_keys, max_candidates=config.max_parts)
    if pairs.height == 0:
        return attach_checks(pairs, source, target).with_columns(in_window=pl.lit(True))
    checked = attach_checks(pairs, source, target)
    in_window = within_window(checked["day_difference"].to_numpy(), config.date_window)
    return checked.with_columns(in_window=pl.Series(in_window, dtype=pl.Boolean))


def _splits(pairs: pl.DataFrame, config: SplitPass, many: Literal["source", "target"]) -> PassOutcome:
    one = "target" if many == "source" else "source"
    one_line, many_line = f"{one}_line", f"{many}_line"
    usable = pl.col("currency_ok") & pl.col("in_window")
    # A record on the "many" side linked to two singles is contested; a single with a contested or
    # unusable link is not split (the evidence does not single out its parts).
    clean = pairs.with_columns(
        _contested=pl.len().over(many_line) > 1,
    ).with_columns(
        _blocked=(pl.col("_contested") | ~usable).any().over(one_line),
        _parts=pl.len().over(one_line),
    )
    units = (
        clean.filter(~pl.col("_blocked") & (pl.col("_parts") >= 2))
        .group_by(one_line)
        .agg(
            pl.col(many_line).sort().alias(f"{many}_lines"),
            pl.col(f"{one[0]}_amount_minor").first().alias("_single"),
            pl.col(f"{many[0]}_amount_minor").sum().alias("_sum"),
        )
        .sort(one_line)
    )
    if units.height == 0:
        return PassOutcome(empty_matches(), empty_hints())
    single, total = units["_single"].to_numpy(), units["_sum"].to_numpy()
    source_amounts, target_amounts = (total, single) if many == "source" else (single, total)
    fits = within_tolerance(source_amounts, target_amounts, config.tolerance)
    partial = (
        ~fits
        & config.propose_partial
        & (np.sign(single) == np.sign(total))
        & (np.abs(total) < np.abs(single))
    )
    units = units.with_columns(
        _fits=pl.Series(fits, dtype=pl.Boolean), _partial=pl.Series(partial, dtype=pl.Boolean)
    )
    chosen = units.filter(pl.col("_fits") | pl.col("_partial"))
    matches = (
        chosen.select(
            pl.concat_list(one_line).alias(f"{one}_lines"),
            f"{many}_lines",
            confidence=pl.when(pl.col("_fits")).then(SPLIT_CONFIDENCE).otherwise(PARTIAL_CONFIDENCE),
            matched_fields=pl.when(pl.col("_fits"))
            .then(pl.lit(["reference", "amount", "date"]))
            .otherwise(pl.lit(["reference", "partial", "date"])),
            confirm=pl.col("_fits"),
        )
        .select(list(PASS_MATCH_SCHEMA))
        .cast(PASS_MATCH_SCHEMA)  # type: ignore[arg-type]
    )
    off = units.filter(~pl.col("_fits") & ~pl.col("_partial")).select(one_line, f"{many}_lines")
    near = off.explode(f"{many}_lines").rename({f"{many}_lines": many_line})
    hints = hints_from_pairs(near, pl.lit(REASON_AMOUNT_MISMATCH))
    return PassOutcome(matches=matches, hints=hints)


def run_split_pass(source: pl.DataFrame, target: pl.DataFrame, config: SplitPass) -> PassOutcome:
    """Match split and partial payments through a shared reference (see the module docstring)."""
    outcomes: list[PassOutcome] = []
    if source.height == 0 or target.height == 0:
        return PassOutcome(empty_matches(), empty_hints())
    pairs = _linked_pairs(source, target, config)
    if config.direction in ("one_to_many", "both"):
        outcomes.append(_splits(pairs, config, "target"))
        used = outcomes[-1].matches
        pairs = pairs.filter(
            ~pl.col("source_line").is_in(used["source_lines"].explode().implode())
            & ~pl.col("target_line").is_in(used["target_lines"].explode().implode())
        )
    if config.direction in ("many_to_one", "both"):
        outcomes.append(_splits(pairs, config, "source"))
    return PassOutcome(
        matches=pl.concat([o.matches for o in outcomes]), hints=pl.concat([o.hints for o in outcomes])
    )
