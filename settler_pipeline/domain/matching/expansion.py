"""Candidate pairs expanded from search rows, a bounded number of pairs at a time.

A search row (see :mod:`settler_pipeline.domain.matching.candidates`) says that one source may pair
with a run of the sorted targets. Expanding every row at once holds several arrays of one entry per
candidate pair (source and target indices, offsets, the tolerance check, the ranking keys), which
for a large block of crowded sources was the matcher's largest working set. Rows are expanded
:data:`PAIRS_AT_ONCE` pairs at a time instead; when the nearest candidates of each source are to be
picked, a slice holds every row of its sources, and the pairs kept are put back in the order that
expanding every row at once gives, so the result does not depend on the slicing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from settler_pipeline.domain.matching.tolerance import BoolArray, Int64Array

PAIRS_AT_ONCE = 2_000_000
"""Candidate pairs expanded at once (a slice may hold more when one source alone has more)."""

PairFilter = Callable[[Int64Array, Int64Array], BoolArray]
"""Given the source and target indices of some pairs, which of them to keep."""


@dataclass(frozen=True)
class SearchRows:
    """Per row, the source index ``src`` and the run ``start .. start + count`` of sorted targets
    it pairs with; ``order`` maps a sorted target position to the target's index."""

    src: Int64Array
    start: Int64Array
    count: Int64Array
    order: Int64Array


def expanded_pairs(
    rows: SearchRows, sources: int, *, fits: PairFilter | None, nearest: PairFilter | None = None
) -> tuple[Int64Array, Int64Array]:
    """The ``(source index, target index)`` of every pair of ``rows`` that ``fits`` keeps (every
    pair without ``fits``), in row order and then by position within the row. With ``nearest``,
    which is given all the fitting pairs of each source it sees at once, only the pairs it keeps
    are returned (same order)."""
    offsets = np.cumsum(rows.count) - rows.count
    if nearest is None or int(rows.count.sum()) <= PAIRS_AT_ONCE:
        # Contiguous runs of rows: the pairs come out in order without sorting them back.
        parts = [
            _pairs(rows, np.arange(first, last), offsets, fits, nearest)
            for first, last in _row_slices(rows.count)
        ]
    else:
        parts = [
            _pairs(rows, np.flatnonzero((rows.src >= first) & (rows.src < last)), offsets, fits, nearest)
            for first, last in _source_slices(rows.src, rows.count, sources)
        ]
    src = np.concatenate([part[0] for part in parts]) if parts else np.zeros(0, np.int64)
    tgt = np.concatenate([part[1] for part in parts]) if parts else np.zeros(0, np.int64)
    if len(parts) > 1 and nearest is not None:
        back = np.argsort(np.concatenate([part[2] for part in parts]), kind="stable")
        src, tgt = src[back], tgt[back]
    return src, tgt


def _row_slices(count: Int64Array) -> list[tuple[int, int]]:
    """Runs of consecutive rows of about :data:`PAIRS_AT_ONCE` pairs each."""
    total = np.cumsum(count)
    if not len(total):
        return []
    cuts = np.searchsorted(total, np.arange(PAIRS_AT_ONCE, int(total[-1]), PAIRS_AT_ONCE), side="right")
    edges = np.unique(np.concatenate([[0], cuts, [len(count)]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _source_slices(src: Int64Array, count: Int64Array, sources: int) -> list[tuple[int, int]]:
    """Ranges of source indices holding about :data:`PAIRS_AT_ONCE` pairs each."""
    total = np.cumsum(np.bincount(src, weights=count, minlength=sources).astype(np.int64))
    cuts = np.searchsorted(total, np.arange(PAIRS_AT_ONCE, int(total[-1]), PAIRS_AT_ONCE), side="right")
    edges = np.unique(np.concatenate([[0], cuts, [sources]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _pairs(
    rows: SearchRows,
    which: Int64Array,
    offsets: Int64Array,
    fits: PairFilter | None,
    nearest: PairFilter | None,
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """The kept pairs of the rows ``which`` and their positions among all rows' pairs."""
    count = rows.count[which]
    row = np.repeat(which, count)
    within = np.arange(len(row), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    src = rows.src[row]
    tgt = rows.order[rows.start[row] + within]
    position = offsets[row] + within
    del row, within
    if fits is not None:
        keep = fits(src, tgt)
        src, tgt, position = src[keep], tgt[keep], position[keep]
    if nearest is not None:
        keep = nearest(src, tgt)
        src, tgt, position = src[keep], tgt[keep], position[keep]
    return src, tgt, position


def nearest_of_each(
    src: Int64Array, amount: Int64Array, days: Int64Array, line: Int64Array, k: int
) -> BoolArray:
    """Which pairs are among the ``k`` of their source (``src``) with the smallest ``amount``, then
    ``days``, then ``line`` (all non-negative; pairs equal in all three keep their order). The four
    are packed into one integer when they fit 63 bits (always in practice: a stable sort of one
    integer, mostly in order already, is much cheaper than sorting several keys)."""
    keep = np.zeros(len(src), dtype=np.bool_)
    if not len(src):
        return keep
    line_bits = int(line.max()).bit_length()
    day_bits = int(days.max()).bit_length()
    amount_bits = int(amount.max()).bit_length()
    if int(src.max()).bit_length() + amount_bits + day_bits + line_bits <= 63:
        packed = (((src << amount_bits) | amount) << (day_bits + line_bits)) | (days << line_bits) | line
        order = np.argsort(packed, kind="stable")
    else:
        order = np.lexsort((line, days, amount, src))
    grouped = src[order]
    first = np.flatnonzero(np.concatenate([[True], grouped[1:] != grouped[:-1]]))
    starts = np.repeat(first, np.diff(np.concatenate([first, [len(grouped)]])))
    keep[order[np.arange(len(grouped)) - starts < k]] = True
    return keep
