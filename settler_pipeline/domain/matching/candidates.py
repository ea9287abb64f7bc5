"""Candidate pairs by amount and date, without a cross join.

Targets are sorted once by a composite integer key; each source then finds its candidates with two
binary searches per day of the window (or two in all for an exact-amount tolerance), so the cost is
``O((n + m) log m + pairs)`` rather than ``O(n * m)``. Amounts enter the key as their rank among the
distinct target amounts, which keeps the key small whatever the amounts are.

A source with more than ``max_candidates`` candidates is *crowded*. With ``crowded="skip"`` it is
not expanded at all (the caller can mark it ambiguous); with ``crowded="nearest"`` only its
``max_candidates`` candidates nearest in amount (then in days, then by line) are kept. Either way the
pair count stays bounded by about ``n * max_candidates`` and crowded sources are reported. Sources
are searched :data:`SOURCE_CHUNK` at a time, so the intermediate arrays (up to ``2 *
max_candidates`` per source and day of the window before the nearest are kept) stay bounded too;
the pairs themselves are expanded and ranked a slice at a time (see
:mod:`settler_pipeline.domain.matching.expansion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from settler_pipeline.domain.matching.config import Tolerance
from settler_pipeline.domain.matching.expansion import PairFilter, SearchRows, expanded_pairs, nearest_of_each
from settler_pipeline.domain.matching.narrowing import Rows, lowest_lines_of_cut_runs, narrowed
from settler_pipeline.domain.matching.sorted_keys import SortedKeys
from settler_pipeline.domain.matching.tolerance import (
    BoolArray,
    Int64Array,
    search_radius,
    within_tolerance,
)
from settler_pipeline.errors import ValidationError

PAIR_SCHEMA: dict[str, pl.DataType] = {
    "source_line": pl.Int64(),
    "target_line": pl.Int64(),
    "amount_difference": pl.Int64(),  # target - source
    "day_difference": pl.Int64(),  # target day - source day
    "same_currency": pl.Boolean(),
}

_KEY_LIMIT = 2**62
_NARROW_FROM = 5
"""Crowded sources are cut to their nearest candidates before expanding (see
:func:`.narrowing.narrowed`) when they would expand this many times the candidates kept: below it
the search costs more than it saves."""
SOURCE_CHUNK = 500_000
"""Sources searched at once (see :func:`window_candidates`)."""


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs (:data:`PAIR_SCHEMA`) and the source lines that had too many to expand;
    ``source_rows`` and ``target_rows``: per pair, the rows of its records in the frames searched."""

    pairs: pl.DataFrame
    crowded_lines: pl.Series
    source_rows: Int64Array
    target_rows: Int64Array


def _empty() -> Candidates:
    none, no_lines = np.zeros(0, dtype=np.int64), pl.Series("source_line", [], dtype=pl.Int64)
    return Candidates(pl.DataFrame(schema=PAIR_SCHEMA), no_lines, none, none)


def currency_codes(source: pl.DataFrame, target: pl.DataFrame) -> tuple[Int64Array, Int64Array]:
    """Dense integer codes per currency shared by both sides (in the currencies' sort order); -1 for
    a null currency."""
    # An enum of the few distinct currencies: a hash lookup per row, where ranking both sides
    # together would sort every string of them.
    names = pl.concat([source["currency"].unique(), target["currency"].unique()]).drop_nulls().unique().sort()
    kind = pl.Enum(names.cast(pl.String))

    def codes(frame: pl.DataFrame) -> Int64Array:
        column = frame["currency"].cast(pl.String).cast(kind).to_physical().cast(pl.Int64)
        return np.asarray(column.fill_null(-1).to_numpy(), dtype=np.int64)

    return codes(source), codes(target)


def window_candidates(
    source: pl.DataFrame,
    target: pl.DataFrame,
    *,
    tolerance: Tolerance,
    days_before: int,
    days_after: int,
    max_candidates: int,
    same_currency: bool = True,
    crowded: Literal["skip", "nearest"] = "skip",
) -> Candidates:
    """All pairs with the amount within ``tolerance`` and ``target_day - source_day`` in
    ``[-days_before, days_after]``; with ``same_currency`` the currencies must also agree (null
    currencies never match), otherwise pairs of any currency are returned.

    Both frames need ``line_number`` (Int64), ``amount_minor`` (Int64), ``currency`` and ``day``
    (Int64 days since the epoch). Order of the returned pairs is unspecified. See the module
    docstring for ``crowded``.
    """
    if source.height == 0 or target.height == 0:
        return _empty()
    if source.height > SOURCE_CHUNK:
        # Each source's candidates depend on the targets alone: sources are searched a chunk at a
        # time so the expanded (source, target) index arrays stay bounded, whatever the block size.
        parts = [
            window_candidates(
                source.slice(offset, SOURCE_CHUNK),
                target,
                tolerance=tolerance,
                days_before=days_before,
                days_after=days_after,
                max_candidates=max_candidates,
                same_currency=same_currency,
                crowded=crowded,
            )
            for offset in range(0, source.height, SOURCE_CHUNK)
        ]
        return Candidates(
            pl.concat([part.pairs for part in parts]),
            pl.concat([part.crowded_lines for part in parts]),
            np.concatenate([part.source_rows + index * SOURCE_CHUNK for index, part in enumerate(parts)]),
            np.concatenate([part.target_rows for part in parts]),
        )
    s_code, t_code = currency_codes(source, target)
    s_line = source["line_number"].to_numpy()
    s_amt = source["amount_minor"].to_numpy()
    s_day = source["day"].to_numpy()
    t_line = target["line_number"].to_numpy()
    t_amt = target["amount_minor"].to_numpy()
    t_day = target["day"].to_numpy()

    s_part = s_code if same_currency else np.zeros_like(s_code)
    t_part = t_code if same_currency else np.zeros_like(t_code)
    s_ok = s_part >= 0
    t_ok = t_part >= 0
    if not t_ok.any() or not s_ok.any():
        return _empty()

    t_min = int(t_day[t_ok].min())
    n_days = int(t_day[t_ok].max()) - t_min + 1
    n_codes = int(max(t_part.max(), s_part.max())) + 1
    uniq = np.unique(t_amt[t_ok])
    n_amounts = len(uniq)
    amounts = SortedKeys(uniq)
    t_rank = amounts.left(t_amt)

    if n_codes * (n_amounts + 1) * n_days >= _KEY_LIMIT:
        raise ValidationError(
            f"cannot index {n_amounts} distinct amounts over {n_days} days",
            hint="reconcile a shorter date range per run",
        )

    # Targets are ordered by key, then by line number: equal keys must not keep the input's row
    # order, or the slice kept for a crowded source would depend on it.
    src_index: list[Int64Array] = []
    starts: list[Int64Array] = []
    ends: list[Int64Array] = []
    centres: list[Int64Array] = []
    bases: list[Int64Array] = []  # per row, the key of its (currency, day) run at amount rank 0
    gaps: list[Int64Array] = []  # per row, how many days its day is from its source's
    if tolerance.is_exact:
        # Key (currency, amount, day): an exact amount's window of days is one contiguous run.
        t_key = np.where(t_ok, (t_part * n_amounts + t_rank) * n_days + (t_day - t_min), -1)
        order = np.lexsort((t_line, t_key))
        key_sorted = t_key[order]
        keys = SortedKeys(key_sorted)
        rank = amounts.left(s_amt)
        present = s_ok & (rank < n_amounts)
        present[present] = uniq[rank[present]] == s_amt[present]
        lo = np.maximum(s_day - days_before, t_min) - t_min
        hi = np.minimum(s_day + days_after, t_min + n_days - 1) - t_min
        present &= lo <= hi
        idx = np.flatnonzero(present)
        base = (s_part[idx] * n_amounts + rank[idx]) * n_days
        src_index.append(idx)
        starts.append(keys.left(base + lo[idx]))
        ends.append(keys.right(base + hi[idx]))
        centres.append(keys.left(base + (s_day[idx] - t_min)))
    else:
        # Key (currency, day, amount): one range of amounts per day of the window.
        width = n_amounts + 1
        t_key = np.where(t_ok, (t_part * n_days + (t_day - t_min)) * width + t_rank, -1)
        order = np.lexsort((t_line, t_key))
        key_sorted = t_key[order]
        keys = SortedKeys(key_sorted)
        radius = search_radius(s_amt, tolerance)
        r_lo = amounts.left(s_amt - radius)
        r_hi = amounts.right(s_amt + radius)
        r_mid = amounts.left(s_amt)
        for offset in range(-days_before, days_after + 1):
            day = s_day + offset - t_min
            idx = np.flatnonzero(s_ok & (day >= 0) & (day < n_days) & (r_lo < r_hi))
            base = (s_part[idx] * n_days + day[idx]) * width
            src_index.append(idx)
            bases.append(base)
            gaps.append(np.full(len(idx), abs(offset), dtype=np.int64))
            starts.append(keys.left(base + r_lo[idx]))
            ends.append(keys.left(base + r_hi[idx]))
            centres.append(keys.left(base + r_mid[idx]))

    all_src = np.concatenate(src_index).astype(np.int64)
    all_start = np.concatenate(starts).astype(np.int64)
    all_end = np.concatenate(ends).astype(np.int64)
    all_centre = np.concatenate(centres).astype(np.int64)
    per_source = np.bincount(all_src, weights=all_end - all_start, minlength=source.height)
    is_crowded = per_source > max_candidates
    row_crowded = is_crowded[all_src]
    if crowded == "skip":
        keep = ~row_crowded
        all_src, all_start, all_end = all_src[keep], all_start[keep], all_end[keep]
    else:
        # Targets of one (currency, day) run are sorted by amount: the nearest amounts sit around
        # the source amount's insertion point, so a slice of 2 * max_candidates around it suffices.
        unsliced = all_start
        all_start = np.where(row_crowded, np.maximum(all_start, all_centre - max_candidates), all_start)
        all_end = np.where(row_crowded, np.minimum(all_end, all_centre + max_candidates), all_end)
        spread = np.maximum(all_end - all_start, 0)[row_crowded].sum()
        if (
            bases
            and (tolerance.percent_millionths == 0 or tolerance.percent_of == "source")
            and spread > _NARROW_FROM * max_candidates * int(is_crowded.sum())
        ):
            all_start, all_end = narrowed(
                Rows(all_src, all_start, all_end, all_centre, np.concatenate(bases), np.concatenate(gaps)),
                row_crowded,
                s_amt,
                t_amt[order],
                amounts,
                keys,
                max_candidates,
            )
        all_src, all_start, all_end = lowest_lines_of_cut_runs(
            all_src, all_start, all_end, unsliced, row_crowded, keys
        )
    all_count = np.maximum(all_end - all_start, 0)
    keep = all_count > 0
    rows = SearchRows(all_src[keep], all_start[keep], all_count[keep], order)
    del all_src, all_start, all_end, all_centre, all_count, keep

    fits: PairFilter | None = None
    if tolerance.percent_of != "source":
        # The search radius of a percentage of the target is a bound: the pairs are checked. Any
        # other tolerance depends on the source alone, so a row's range is exactly its candidates.

        def fits(src: Int64Array, tgt: Int64Array) -> BoolArray:
            return within_tolerance(s_amt[src], t_amt[tgt], tolerance)

    def nearest(src: Int64Array, tgt: Int64Array) -> BoolArray:
        amount, days = np.abs(t_amt[tgt] - s_amt[src]), np.abs(t_day[tgt] - s_day[src])
        return nearest_of_each(src, amount, days, t_line[tgt], max_candidates)

    # Of a crowded source's pairs, the ``max_candidates`` nearest in amount, then days, then line.
    ranked = crowded == "nearest" and bool(is_crowded.any())
    rep_src, rep_tgt = expanded_pairs(rows, source.height, fits=fits, nearest=nearest if ranked else None)
    pairs = pl.DataFrame(
        {
            "source_line": s_line[rep_src],
            "target_line": t_line[rep_tgt],
            "amount_difference": t_amt[rep_tgt] - s_amt[rep_src],
            "day_difference": t_day[rep_tgt] - s_day[rep_src],
            "same_currency": (s_code[rep_src] == t_code[rep_tgt]) & (s_code[rep_src] >= 0),
        },
        schema=PAIR_SCHEMA,
    )
    crowded_lines = pl.Series("source_line", s_line[is_crowded], dtype=pl.Int64)
    return Candidates(pairs, crowded_lines, rep_src.astype(np.int64), rep_tgt.astype(np.int64))
