"""Cutting the search rows of crowded sources down to their nearest candidates before expanding.

A crowded source (see :mod:`settler_pipeline.domain.matching.candidates`) keeps only its
``max_candidates`` candidates nearest in amount, then in days, then by line. Expanding all its
candidates to rank them costs far more than the few kept, so its rows are cut first: to the
targets no farther in amount than its ``k``-th nearest (found by a binary search on the distance),
and a run of equal keys cut from below gives back its lowest lines, which the ranking prefers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from settler_pipeline.domain.matching.sorted_keys import SortedKeys
from settler_pipeline.domain.matching.tolerance import BoolArray, Int64Array


@dataclass(frozen=True)
class Rows:
    """Search rows: per (source, day of its window), the source's index ``src``, the range
    ``start..end`` of sorted targets it may pair with, the insertion point ``centre`` of the
    source's amount in it, ``base``, the key of that (currency, day) run at amount rank 0, and
    ``days``, how many days that day is from the source's."""

    src: Int64Array
    start: Int64Array
    end: Int64Array
    centre: Int64Array
    base: Int64Array
    days: Int64Array

    def take(self, which: Int64Array | BoolArray) -> Rows:
        """The rows ``which`` (indices or a mask)."""
        return Rows(
            self.src[which],
            self.start[which],
            self.end[which],
            self.centre[which],
            self.base[which],
            self.days[which],
        )


def lowest_lines_of_cut_runs(
    src: Int64Array,
    start: Int64Array,
    end: Int64Array,
    unsliced: Int64Array,
    crowded: BoolArray,
    keys: SortedKeys,
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """The rows with a crowded row whose range now starts inside a run of equal keys (targets of one
    amount on one day, ordered by line) that goes on below it split in two: the rest of the row from
    the run's end, and as many of the run's *first* targets as the row kept of it. The slice around
    the insertion point cut such a run from below, keeping its highest lines; the nearest are ranked
    by line after amount and days, so the lowest lines are the ones that may be kept."""
    idx = np.flatnonzero(crowded & (start > unsliced) & (start < end))
    cut = start[idx]
    inside = keys.keys[cut - 1] == keys.keys[cut]
    idx, cut = idx[inside], cut[inside]
    if not len(idx):
        return src, start, end
    key = keys.keys[cut]
    run_first = np.maximum(unsliced[idx], keys.left(key))
    run_next = np.minimum(end[idx], keys.right(key))
    kept = run_next - cut
    start = start.copy()
    start[idx] = run_next
    return (
        np.concatenate([src, src[idx]]),
        np.concatenate([start, run_first]),
        np.concatenate([end, run_first + kept]),
    )


def _range_within(
    rows: Rows,
    distance: Int64Array,
    which: Int64Array,
    s_amt: Int64Array,
    amounts: SortedKeys,
    keys: SortedKeys,
) -> tuple[Int64Array, Int64Array]:
    """Each row's range cut to the targets whose amount is within its source's ``distance`` (per
    source) of the source's amount; ``which``: the sources of the rows."""
    # The amounts' ranks are looked up per source, not per row: a source has a row per day.
    low, high = np.zeros(len(s_amt), dtype=np.int64), np.zeros(len(s_amt), dtype=np.int64)
    low[which] = amounts.left(s_amt[which] - distance[which])
    high[which] = amounts.right(s_amt[which] + distance[which])
    lo = keys.left(rows.base + low[rows.src])
    hi = keys.left(rows.base + high[rows.src])
    return np.maximum(rows.start, lo), np.minimum(rows.end, hi)


def _bounds(
    rows: Rows, amount: Int64Array, t_amt_sorted: Int64Array, k: int, sources: int
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


def narrowed(
    rows: Rows,
    crowded: BoolArray,
    s_amt: Int64Array,
    t_amt_sorted: Int64Array,
    amounts: SortedKeys,
    keys: SortedKeys,
    k: int,
) -> tuple[Int64Array, Int64Array]:
    """``start`` and ``end`` of the ``crowded`` rows cut to the targets no farther in amount than
    their source's ``k``-th nearest candidate; the other rows unchanged.

    Only for a tolerance whose candidates are every target of a row's range (absolute, or a
    percentage of the source). The distance is found by a binary search per source, counting the
    candidates within a distance with two look-ups per row, so only those ranked afterwards
    are expanded (a crowded source has many more). Every candidate at that distance is kept (ties
    included), so ranking the cut pairs keeps exactly the pairs ranking all of them would."""
    index = np.flatnonzero(crowded & (rows.end > rows.start))
    part = rows.take(index)
    amount = s_amt[part.src]
    sources = len(s_amt)
    below, above = _bounds(part, amount, t_amt_sorted, k, sources)
    searching = part
    while True:
        still = above[searching.src] - below[searching.src] > 1
        if not still.any():
            break
        searching = searching.take(still)
        open_ = above - below > 1
        middle = below + (above - below) // 2
        start, end = _range_within(searching, middle, np.flatnonzero(open_), s_amt, amounts, keys)
        within = np.bincount(searching.src, weights=np.maximum(end - start, 0), minlength=sources)
        above = np.where(open_ & (within >= k), middle, above)
        below = np.where(open_ & (within < k), middle, below)
    parts = np.flatnonzero(np.bincount(part.src, minlength=sources))
    start, end = _range_within(part, above, parts, s_amt, amounts, keys)
    distance = above[part.src]
    # At distance 0 a row's range holds only the source's own amount, ordered by line: within one
    # row (one day) the ranking is by line, so its first ``k`` are all it can contribute.
    end = np.where(distance == 0, np.minimum(end, start + k), end)
    near_start, near_end = _range_within(part, above - 1, parts, s_amt, amounts, keys)
    start, end = _without_late_ties(part, start, end, near_start, near_end, k, sources)
    out_start, out_end = rows.start.copy(), rows.end.copy()
    out_start[index], out_end[index] = start, end
    return out_start, out_end


def _without_late_ties(
    rows: Rows,
    start: Int64Array,
    end: Int64Array,
    near_start: Int64Array,
    near_end: Int64Array,
    k: int,
    sources: int,
) -> tuple[Int64Array, Int64Array]:
    """``start`` and ``end`` (each row's candidates within its source's distance) without the
    candidates *at* that distance that cannot be among the source's ``k`` nearest.

    ``near_start..near_end`` holds a row's candidates nearer than the distance, which rank before
    any at it; those at it rank by days, then line. A (source, days) group of rows whose source has
    at least ``k`` minus its nearer count of candidates at the distance on fewer days has none
    among the ``k``: its rows keep only their nearer candidates, and the ranking has fewer to sort
    (ties at the distance are most of a crowded source's candidates when amounts repeat)."""
    near = np.maximum(near_end - near_start, 0)
    tied = np.maximum(end - start, 0) - near
    quota = k - np.bincount(rows.src, weights=near, minlength=sources).astype(np.int64)
    span = int(rows.days.max()) + 1 if len(rows.days) else 1
    group = rows.src * span + rows.days
    order = np.argsort(group, kind="stable")
    grouped = SortedKeys(group[order])
    tied_before = np.concatenate([[0], np.cumsum(tied[order])])
    # Tied candidates of the source's groups of fewer days: from the source's first row to the group's.
    before = tied_before[grouped.left(group)] - tied_before[grouped.left(rows.src * span)]
    late = before >= quota[rows.src]
    return np.where(late, near_start, start), np.where(late, np.where(near > 0, near_end, near_start), end)
