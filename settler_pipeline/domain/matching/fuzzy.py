"""The fuzzy pass: text similarity on what is left; it only ever *proposes* matches for review.

Candidates are blocked like the amount + date pass (same currency, amount within the pass's
tolerance, target day within its window), keeping per source at most ``max_candidates`` candidates
nearest in amount, so the number of similarity computations stays linear.

Similarity of a pair: the highest ``rapidfuzz.fuzz.token_set_ratio`` (after lower-casing and
replacing non-alphanumerics by spaces) between any configured field of the source and any configured
field of the target, as a fraction in [0, 1]; token-set similarity is 1.0 when one text's words are
all found in the other, which is what a bank memo quoting a customer name looks like. Pairs below
``min_score`` are dropped; among the rest the mutual unique best (higher similarity, then smaller
amount difference, then fewer days) is proposed and ties are left ambiguous.

With ``reject_conflicting_references`` (the default), two records whose references cannot be the same
(see the amount + date pass) are never candidates.

Confidence: ``0.8 * similarity`` -- a proposal never scores like an auto-confirmed match.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from settler_pipeline.domain.matching.amount_date import without_conflicting_references
from settler_pipeline.domain.matching.candidates import Candidates, window_candidates
from settler_pipeline.domain.matching.config import FuzzyPass
from settler_pipeline.domain.matching.outcome import (
    PassOutcome,
    ambiguous_hints,
    empty_hints,
    empty_matches,
    one_to_one_matches,
)
from settler_pipeline.domain.matching.resolve import resolve_mutual_best
from settler_pipeline.domain.matching.similarity_bound import TextFeatures, may_reach, text_features

PROPOSAL_WEIGHT = 0.8
SCORED_AT_ONCE = 250_000
OVERLAP_RECORDS = 100_000
"""Records of both sides up to which the texts' features are worked out while the candidates are
searched: above it, holding both at once took a 5M-row run's largest block ~0.2 GB higher."""
"""Candidate pairs scored at once (see :func:`_with_similarity`)."""


def _clean(column: str) -> pl.Expr:
    # What rapidfuzz's default_process does (lower case, non-alphanumerics to spaces, trimmed), done
    # once per record in Polars rather than once per candidate pair.
    return (
        pl.col(column)
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars()
        .fill_null("")
    )


@dataclass(frozen=True)
class _Texts:
    """A side's cleaned texts per field and their features (see :mod:`.similarity_bound`)."""

    texts: dict[str, pl.Series]
    features: dict[str, TextFeatures]


def _texts(records: pl.DataFrame, fields: list[str]) -> _Texts:
    texts = {f: records.select(_clean(f)).to_series() for f in fields}
    return _Texts(texts, {f: text_features(t) for f, t in texts.items()})


def _with_similarity(
    candidates: Candidates, source: _Texts, target: _Texts, fields: list[str], min_score: float
) -> pl.DataFrame:
    """The candidate pairs scoring at least ``min_score``, with their ``similarity``.

    A pair of texts is scored only when :func:`.similarity_bound.may_reach` says it may reach
    ``min_score``: most candidate pairs share no word and cannot, and bounding them costs a fraction
    of scoring them. Scored :data:`SCORED_AT_ONCE` pairs at a time, so the lists of strings the
    scorer reads are held for one slice of the pairs, not for all of them."""
    pairs, source_rows, target_rows = candidates.pairs, candidates.source_rows, candidates.target_rows
    # Rounded scores below the bound's own cut cannot reach min_score: the margin covers the
    # rounding to hundredths below and the float arithmetic of the bound.
    cut = 100.0 * min_score - 0.01
    best = np.zeros(pairs.height, dtype=np.float64)
    for offset in range(0, pairs.height, SCORED_AT_ONCE):
        s_rows = source_rows[offset : offset + SCORED_AT_ONCE]
        t_rows = target_rows[offset : offset + SCORED_AT_ONCE]
        for source_field in fields:
            for target_field in fields:
                # An empty text scores 0 against anything and is never scored (a bank statement
                # often has no counterparty column at all); the bound says so too.
                hopeful = np.flatnonzero(
                    may_reach(
                        source.features[source_field], target.features[target_field], s_rows, t_rows, cut
                    )
                )
                if not len(hopeful):
                    continue
                scores = process.cpdist(
                    source.texts[source_field].gather(s_rows[hopeful]).to_list(),
                    target.texts[target_field].gather(t_rows[hopeful]).to_list(),
                    scorer=fuzz.token_set_ratio,
                    dtype=np.float64,
                    workers=-1,
                )
                at = offset + hopeful
                best[at] = np.maximum(best[at], np.asarray(scores, dtype=np.float64))
    # Round to hundredths of a percent so equal texts give exactly equal scores (ties stay ties).
    similarity = pl.Series("similarity", np.round(best, 2) / 100.0, dtype=pl.Float64)
    return pairs.with_columns(similarity).filter(pl.col("similarity") >= min_score)


def run_fuzzy_pass(source: pl.DataFrame, target: pl.DataFrame, config: FuzzyPass) -> PassOutcome:
    """Propose matches by text similarity (see the module docstring)."""
    window = config.date_window
    fields: list[str] = list(dict.fromkeys(config.fields))

    def search() -> Candidates:
        return window_candidates(
            source,
            target,
            tolerance=config.tolerance,
            days_before=window.days_before,
            days_after=window.days_after,
            max_candidates=config.max_candidates,
            crowded="nearest",
        )

    if source.height + target.height > OVERLAP_RECORDS:
        candidates = search()
        source_texts, target_texts = _texts(source, fields), _texts(target, fields)
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The texts' features need no candidate: they are worked out on the other core while
            # the candidates are searched (both mostly run outside the interpreter's lock).
            texts = pool.submit(lambda: (_texts(source, fields), _texts(target, fields)))
            candidates = search()
            source_texts, target_texts = texts.result()
    if candidates.pairs.height == 0 or not fields:
        return PassOutcome(empty_matches(), empty_hints())
    scored = _with_similarity(candidates, source_texts, target_texts, fields, config.min_score)
    if config.reject_conflicting_references:
        # After scoring: far fewer pairs are left to check than were scored.
        scored = without_conflicting_references(scored, source, target)
    resolution = resolve_mutual_best(
        scored.with_columns(
            dissimilarity=-pl.col("similarity"),
            abs_amount=pl.col("amount_difference").abs(),
            abs_days=pl.col("day_difference").abs(),
        ),
        ["dissimilarity", "abs_amount", "abs_days"],
    )
    matched_fields = pl.lit(["text", "amount", "date"])
    matches = one_to_one_matches(
        resolution.chosen,
        confidence=(pl.col("similarity") * PROPOSAL_WEIGHT).round(4),
        fields=matched_fields,
        confirm=pl.lit(False),
    )
    return PassOutcome(matches=matches, hints=ambiguous_hints(resolution.ambiguous))
