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
from settler_pipeline.domain.matching.expansion import SearchRows, expanded_pairs, nearest_of_each
from settler_pipeline.domain.matching.tolerance import (
    BoolArray,
    Int64Array,
    allowed_difference,
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
"""Crowded sources are cut to their nearest candidates before expanding (see :func:`_narrowed`) when
they would expand this many times the candidates kept: below it the search costs more than it saves."""
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
    t_rank = np.searchsorted(uniq, t_amt)

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
    if tolerance.is_exact:
        # Key (currency, amount, day): an exact amount's window of days is one contiguous run.
        t_key = np.where(t_ok, (t_part * n_amounts + t_rank) * n_days + (t_day - t_min), -1)
        order = np.lexsort((t_line, t_key))
        key_sorted = t_key[order]
        rank = np.searchsorted(uniq, s_amt)
        present = s_ok & (rank < n_amounts)
        present[present] = uniq[rank[present]] == s_amt[present]
        lo = np.maximum(s_day - days_before, t_min) - t_min
        hi = np.minimum(s_day + days_after, t_min + n_days - 1) - t_min
        present &= lo <= hi
        idx = np.flatnonzero(present)
        base = (s_part[idx] * n_amounts + rank[idx]) * n_days
        src_index.append(idx)
        starts.append(np.searchsorted(key_sorted, base + lo[idx], side="left"))
        ends.append(np.searchsorted(key_sorted, base + hi[idx], side="right"))
        centres.append(np.searchsorted(key_sorted, base + (s_day[idx] - t_min), side="left"))
    else:
        # Key (currency, day, amount): one range of amounts per day of the window.
        width = n_amounts + 1
        t_key = np.where(t_ok, (t_part * n_days + (t_day - t_min)) * width + t_rank, -1)
        order = np.lexsort((t_line, t_key))
        key_sorted = t_key[order]
        radius = search_radius(s_amt, tolerance)
        r_lo = np.searchsorted(uniq, s_amt - radius, side="left")
        r_hi = np.searchsorted(uniq, s_amt + radius, side="right")
        r_mid = np.searchsorted(uniq, s_amt, side="left")
        for offset in range(-days_before, days_after + 1):
            day = s_day + offset - t_min
            idx = np.flatnonzero(s_ok & (day >= 0) & (day < n_days) & (r_lo < r_hi))
            base = (s_part[idx] * n_days + day[idx]) * width
            src_index.append(idx)
            bases.append(base)
            starts.append(np.searchsorted(key_sorted, base + r_lo[idx], side="left"))
            ends.append(np.searchsorted(key_sorted, base + r_hi[idx], side="left"))
            centres.append(np.searchsorted(key_sorted, base + r_mid[idx], side="left"))

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
            all_start, all_end = _narrowed(
                _Rows(all_src, all_start, all_end, all_centre, np.concatenate(bases).astype(np.int64)),
                row_crowded,
                s_amt,
                t_amt[order],
                uniq,
                key_sorted,
                max_candidates,
            )
        all_src, all_start, all_end = _lowest_lines_of_cut_runs(
            all_src, all_start, all_end, unsliced, row_crowded, key_sorted
        )
    all_count = np.maximum(all_end - all_start, 0)
    keep = all_count > 0
    rows = SearchRows(all_src[keep], all_start[keep], all_count[keep], order)
    del all_src, all_start, all_end, all_centre, all_count, keep

    if tolerance.percent_of == "source":
        # The allowed difference depends on the source alone: worked out once per source rather than
        # once per pair (a percentage costs an integer division per amount).
        allowed = allowed_difference(s_amt, tolerance)

        def fits(src: Int64Array, tgt: Int64Array) -> BoolArray:
            kept: BoolArray = np.abs(t_amt[tgt] - s_amt[src]) <= allowed[src]
            return kept

    else:

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


@dataclass(frozen=True)
class _Rows:
    """Search rows: per (source, day of its window), the source's index ``src``, the range
    ``start..end`` of sorted targets it may pair with, the insertion point ``centre`` of the
    source's amount in it, and ``base``, the key of that (currency, day) run at amount rank 0."""

    src: Int64Array
    start: Int64Array
    end: Int64Array
    centre: Int64Array
    base: Int64Array

    def take(self, which: Int64Array | BoolArray) -> _Rows:
        return _Rows(
            self.src[which], self.start[which], self.end[which], self.centre[which], self.base[which]
        )


def _lowest_lines_of_cut_runs(
    src: Int64Array,
    start: Int64Array,
    end: Int64Array,
    unsliced: Int64Array,
    crowded: BoolArray,
    key_sorted: Int64Array,
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """The rows with a crowded row whose range now starts inside a run of equal keys (targets of one
    amount on one day, ordered by line) that goes on below it split in two: the rest of the row from
    the run's end, and as many of the run's *first* targets as the row kept of it. The slice around
    the insertion point cut such a run from below, keeping its highest lines; the nearest are ranked
    by line after amount and days, so the lowest lines are the ones that may be kept."""
    idx = np.flatnonzero(crowded & (start > unsliced) & (start < end))
    cut = start[idx]
    inside = key_sorted[cut - 1] == key_sorted[cut]
    idx, cut = idx[inside], cut[inside]
    if not len(idx):
        return src, start, end
    key = key_sorted[cut]
    run_first = np.maximum(unsliced[idx], np.searchsorted(key_sorted, key, side="left"))
    run_next = np.minimum(end[idx], np.searchsorted(key_sorted, key, side="right"))
    kept = run_next - cut
    start = start.copy()
    start[idx] = run_next
    return (
        np.concatenate([src, src[idx]]),
        np.concatenate([start, run_first]),
        np.concatenate([end, run_first + kept]),
    )


def _range_within(
    rows: _Rows, amount: Int64Array, distance: Int64Array, uniq: Int64Array, key_sorted: Int64Array
) -> tuple[Int64Array, Int64Array]:
    """Each row's range cut to the targets whose amount is within ``distance`` of ``amount``."""
    lo = np.searchsorted(key_sorted, rows.base + np.searchsorted(uniq, amount - distance, side="left"))
    hi = np.searchsorted(key_sorted, rows.base + np.searchsorted(uniq, amount + distance, side="right"))
    return np.maximum(rows.start, lo), np.minimum(rows.end, hi)


def _bounds(
    rows: _Rows, amount: Int64Array, t_amt_sorted: Int64Array, k: int, sources: int
) -> tuple[Int64Array, Int64Array]:
    """Per source, a distance within which fewer than ``k`` of its candidates lie (just under its
    nearest) and one within which at least ``k`` do (its farthest, or closer: the ``k``-th of one
    row on one side of the amount, when a row has that many there)."""
    none = np.iinfo(np.int64).max
    last = len(t_amt_sorted) - 1

    def gap(offset: int, present: BoolArray) -> Int64Array:
        at = np.clip(rows.centre + offset, 0, last)
        return np.where(present, np.abs(t_amt_sorted[at] - amount), none)

    nearest = np.minimum(gap(-1, rows.centre > rows.start), gap(0, rows.centre < rows.end))
    kth = np.minimum(gap(-k, rows.centre - k >= rows.start), gap(k - 1, rows.centre + k - 1 < rows.end))
    farthest = np.maximum(
        np.abs(t_amt_sorted[rows.start] - amount), np.abs(t_amt_sorted[rows.end - 1] - amount)
    )
    below = np.full(sources, none, dtype=np.int64)
    np.minimum.at(below, rows.src, nearest)
    above = np.zeros(sources, dtype=np.int64)
    np.maximum.at(above, rows.src, farthest)
    np.minimum.at(above, rows.src, kth)
    return below - 1, above


def _narrowed(
    rows: _Rows,
    crowded: BoolArray,
    s_amt: Int64Array,
    t_amt_sorted: Int64Array,
    uniq: Int64Array,
    key_sorted: Int64Array,
    k: int,
) -> tuple[Int64Array, Int64Array]:
    """``start`` and ``end`` of the ``crowded`` rows cut to the targets no farther in amount than
    their source's ``k``-th nearest candidate; the other rows unchanged.

    Only for a tolerance whose candidates are every target of a row's range (absolute, or a
    percentage of the source). The distance is found by a binary search per source, counting the
    candidates within a distance with two binary searches per row, so only those ranked afterwards
    are expanded (a crowded source has many more). Every candidate at that distance is kept (ties
    included), so ranking the cut pairs keeps exactly the pairs ranking all of them would."""
    index = np.flatnonzero(crowded & (rows.end > rows.start))
    part = rows.take(index)
    amount = s_amt[part.src]
    sources = len(s_amt)
    below, above = _bounds(part, amount, t_amt_sorted, k, sources)
    searching, searched = part, amount
    while True:
        still = above[searching.src] - below[searching.src] > 1
        if not still.any():
            break
        searching, searched = searching.take(still), searched[still]
        middle = below + (above - below) // 2
        start, end = _range_within(searching, searched, middle[searching.src], uniq, key_sorted)
        within = np.bincount(searching.src, weights=np.maximum(end - start, 0), minlength=sources)
        open_ = above - below > 1
        above = np.where(open_ & (within >= k), middle, above)
        below = np.where(open_ & (within < k), middle, below)
    distance = above[part.src]
    start, end = _range_within(part, amount, distance, uniq, key_sorted)
    # At distance 0 a row's range holds only the source's own amount, ordered by line: within one
    # row (one day) the ranking is by line, so its first ``k`` are all it can contribute.
    end = np.where(distance == 0, np.minimum(end, start + k), end)
    out_start, out_end = rows.start.copy(), rows.end.copy()
    out_start[index], out_end[index] = start, end
    return out_start, out_end
