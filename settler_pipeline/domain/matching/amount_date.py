"""The amount + date pass: same currency, amount within tolerance, target day within the window.

Candidates come from sorted binary searches (:mod:`.candidates`), never a cross join. A pair is
matched only when it is the unique best of both its source and its target (smaller amount
difference, then fewer days apart); tied records stay unmatched as ``ambiguous``, as do sources
with more than ``max_candidates`` candidates.

With ``propose_when_dates_decide``, a chosen pair whose source or target had another candidate with
the same amount difference was told apart by dates alone (settlement lags vary, so that is weak
evidence): it is proposed for review instead of auto-confirmed.

Confidence: ``0.90 - 0.02 * |days apart| - 0.05 * |amount difference| / allowed difference``
(the last term is 0 for equal amounts), never below 0.5.

With ``reject_conflicting_references``, a pair whose records both carry a reference and no
normalised reference (case and whitespace only) of one contains one of the other is not a
candidate: ``INV-1`` and ``1`` may be the same invoice, ``INV-7`` and ``INV-8`` are not. A
placeholder (``NOTPROVIDED``, ``N/A``, ...) is no reference, so it never conflicts.

Records left unmatched are then searched once more, only to explain them: a same-amount counterpart
in another currency inside the window is a ``currency_mismatch``; one in the same currency up to
``mismatch_search_days`` outside the window is a ``date_mismatch``. Those are never matched.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from settler_pipeline.domain.matching.candidates import window_candidates
from settler_pipeline.domain.matching.config import AmountDatePass
from settler_pipeline.domain.matching.normalise import normalise_key, reference_values
from settler_pipeline.domain.matching.outcome import (
    PassOutcome,
    ambiguous_hints,
    hints_from_pairs,
    one_to_one_matches,
)
from settler_pipeline.domain.matching.resolve import resolve_mutual_best
from settler_pipeline.domain.matching.result import REASON_CURRENCY_MISMATCH, REASON_DATE_MISMATCH
from settler_pipeline.domain.matching.tolerance import allowed_difference, within_window


def _with_confidence(chosen: pl.DataFrame, source: pl.DataFrame, config: AmountDatePass) -> pl.DataFrame:
    frame = chosen.join(
        source.select(source_line="line_number", _source_amount="amount_minor"), on="source_line", how="left"
    )
    difference = frame["amount_difference"].to_numpy()
    # The base of the percentage: the source amount, or the target amount (source + difference).
    base = frame["_source_amount"].to_numpy()
    if config.tolerance.percent_of == "target":
        base = base + difference
    ratio = np.abs(difference) / np.maximum(allowed_difference(base, config.tolerance), 1)
    days = np.abs(frame["day_difference"].to_numpy())
    confidence = np.maximum(0.9 - 0.02 * days - 0.05 * np.minimum(ratio, 1.0), 0.5)
    return frame.drop("_source_amount").with_columns(_confidence=pl.Series(confidence, dtype=pl.Float64))


def without_conflicting_references(
    pairs: pl.DataFrame, source: pl.DataFrame, target: pl.DataFrame
) -> pl.DataFrame:
    """Drop pairs whose two records carry references that cannot be the same (see module docstring):
    both carry at least one reference and no reference of one contains a reference of the other."""
    # Only the records that appear in a pair need their references normalised.
    s_refs = _keys(_involved(source, pairs["source_line"]), "source_line")
    t_refs = _keys(_involved(target, pairs["target_line"]), "target_line")
    lines = ["source_line", "target_line"]
    both = (
        pairs.select(lines)
        .join(s_refs.select("source_line").unique(), on="source_line", how="semi")
        .join(t_refs.select("target_line").unique(), on="target_line", how="semi")
    )
    if both.height == 0:
        return pairs
    compared = both.join(s_refs, on="source_line").join(t_refs, on="target_line")
    agree = compared.filter(
        pl.col("_s_ref").str.contains(pl.col("_t_ref"), literal=True)
        | pl.col("_t_ref").str.contains(pl.col("_s_ref"), literal=True)
    ).select(lines)
    conflicting = both.join(agree, on=lines, how="anti")
    return pairs.join(conflicting, on=lines, how="anti")


def _involved(records: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
    # A filter on a hash set of the lines: cheaper than a semi-join against the whole side.
    return records.filter(pl.col("line_number").is_in(lines.unique().implode()))


def _keys(records: pl.DataFrame, line: str) -> pl.DataFrame:
    name = "_s_ref" if line == "source_line" else "_t_ref"
    return (
        reference_values(records)
        .select(pl.col("line_number").alias(line), normalise_key(pl.col("value")).alias(name))
        .drop_nulls(name)
        .unique()
    )


def _with_date_decided(chosen: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """Flag chosen pairs whose source or target had another candidate with the same amount
    difference: only the dates set them apart."""
    same_amount = pairs.select(
        "source_line",
        "target_line",
        _n_source=pl.len().over("source_line", pl.col("amount_difference").abs()),
        _n_target=pl.len().over("target_line", pl.col("amount_difference").abs()),
    )
    return chosen.join(same_amount, on=["source_line", "target_line"], how="left").with_columns(
        _date_decided=(pl.col("_n_source") > 1) | (pl.col("_n_target") > 1)
    )


def run_amount_date_pass(source: pl.DataFrame, target: pl.DataFrame, config: AmountDatePass) -> PassOutcome:
    """Match records by amount and date (see the module docstring)."""
    window = config.date_window
    candidates = window_candidates(
        source,
        target,
        tolerance=config.tolerance,
        days_before=window.days_before,
        days_after=window.days_after,
        max_candidates=config.max_candidates,
    )
    pairs = candidates.pairs
    if config.reject_conflicting_references:
        pairs = without_conflicting_references(pairs, source, target)
    resolution = resolve_mutual_best(
        pairs.with_columns(
            abs_amount=pl.col("amount_difference").abs(), abs_days=pl.col("day_difference").abs()
        ),
        ["abs_amount", "abs_days"],
    )
    chosen = resolution.chosen
    confirm = pl.lit(True)
    if config.propose_when_dates_decide:
        chosen = _with_date_decided(chosen, pairs)
        confirm = ~pl.col("_date_decided")
    matches = one_to_one_matches(
        _with_confidence(chosen, source, config),
        confidence=pl.col("_confidence"),
        fields=pl.lit(["amount", "date"]),
        confirm=confirm,
    )
    hints = [ambiguous_hints(resolution.ambiguous, candidates.crowded_lines)]

    if config.mismatch_search_days > 0:
        left_source = source.join(chosen.select(line_number="source_line"), on="line_number", how="anti")
        left_target = target.join(chosen.select(line_number="target_line"), on="line_number", how="anti")
        near = window_candidates(
            left_source,
            left_target,
            tolerance=config.tolerance,
            days_before=window.days_before + config.mismatch_search_days,
            days_after=window.days_after + config.mismatch_search_days,
            max_candidates=config.max_candidates,
            same_currency=False,
        ).pairs
        in_window = pl.Series(within_window(near["day_difference"].to_numpy(), window), dtype=pl.Boolean)
        near = near.with_columns(in_window=in_window)
        reason = (
            pl.when(~pl.col("same_currency") & pl.col("in_window"))
            .then(pl.lit(REASON_CURRENCY_MISMATCH))
            .when(pl.col("same_currency") & ~pl.col("in_window"))
            .then(pl.lit(REASON_DATE_MISMATCH))
            .otherwise(pl.lit(None, dtype=pl.String))
        )
        hints.append(hints_from_pairs(near, reason))
    return PassOutcome(matches=matches, hints=pl.concat(hints))
