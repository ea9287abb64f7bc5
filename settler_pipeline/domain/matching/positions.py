"""Finding records by line number: the row of each of many line numbers in a side's frame.

Line numbers are a side's row numbers in its input, so a block's records hold nearly every line of
their span: an array over the span, holding each line's row, finds a million lines with one gather.
A binary search into the sorted lines (the fallback for a span too sparse for such an array) costs a
cache miss per step on a million lines, several times that.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

DENSE = 4
"""An array over the span of the line numbers is used when the span is at most this many times their
count (plus a constant, for small frames)."""


class LinePositions:
    """The rows of a frame's ``line_number`` column, looked up by line (see the module docstring)."""

    def __init__(self, lines: pl.Series) -> None:
        """``lines``: the frame's line numbers, in row order (no nulls). :attr:`unique` says
        whether no line occurs twice (a repeated line is found at one of its rows)."""
        values = lines.to_numpy()
        self._low = int(values.min()) if len(values) else 0
        span = int(values.max()) - self._low + 1 if len(values) else 0
        self._by_line: npt.NDArray[np.int64] | None = None
        if span <= DENSE * len(values) + 1024:
            by_line = np.full(span, -1, dtype=np.int64)
            by_line[values - self._low] = np.arange(len(values), dtype=np.int64)
            self._by_line = by_line
            self.unique = int((by_line >= 0).sum()) == len(values)
        else:
            self._order = np.argsort(values, kind="stable")
            self._sorted = values[self._order]
            self.unique = bool(len(values) < 2 or (np.diff(self._sorted) != 0).all())

    def rows(self, wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The row holding each line of ``wanted``, -1 for a line the frame does not hold."""
        if self._by_line is not None:
            if not len(self._by_line):
                return np.full(len(wanted), -1, dtype=np.int64)
            at = wanted - self._low
            inside = (at >= 0) & (at < len(self._by_line))
            if inside.all():
                return self._by_line[at]
            return np.where(inside, self._by_line[np.where(inside, at, 0)], -1)
        if not len(self._sorted):
            return np.full(len(wanted), -1, dtype=np.int64)
        found = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
        return np.where(self._sorted[found] == wanted, self._order[found], -1)
