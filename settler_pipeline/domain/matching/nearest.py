"""The single nearest counterpart of each record: what an unmatched record is explained against.

"Nearest" ranks the other side's records of the same currency within ``days`` days and within the
tolerance by the amount difference, then the days apart, then the line number, and keeps the first.
:func:`~settler_pipeline.domain.matching.candidates.window_candidates` with ``max_candidates=1``
gives the same pair, but it counts and narrows every record's candidates first (a 50% tolerance has
thousands per record at scale); one candidate needs far less. The other side is sorted once by
(currency, day, amount, line); per record and day of the window, the nearest amount at or above the
record's and the nearest below are two binary searches away, each the lowest line of its amount,
and the best of those (at most two per day) is the record's nearest. A tolerance taken on the
record's own amount is symmetric around it, so a nearer amount is within it whenever a farther one
on the same side is: the nearest of each side is the only one that can be the best.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from settler_pipeline.domain.matching.candidates import currency_codes
from settler_pipeline.domain.matching.config import Tolerance
from settler_pipeline.domain.matching.tolerance import Int64Array, within_tolerance
from settler_pipeline.errors import ValidationError

_KEY_LIMIT = 2**62
NEAREST_SCHEMA: dict[str, pl.DataType] = {"line_number": pl.Int64(), "closest_line": pl.Int64()}


def nearest_counterparts(
    records: pl.DataFrame, others: pl.DataFrame, *, tolerance: Tolerance, days: int
) -> pl.DataFrame:
    """``(line_number, closest_line)``: per record of ``records`` that has any, its nearest record of
    ``others`` (see the module docstring; null currencies have none). Both frames need
    ``line_number``, ``amount_minor``, ``currency`` and ``day`` (Int64 days since the epoch);
    ``tolerance`` must be a percentage of the record's own amount (``percent_of="source"``)."""
    if tolerance.percent_of != "source":
        raise ValidationError(
            "the nearest counterpart needs a tolerance on the record's own amount",
            hint='use percent_of="source"',
        )
    empty = pl.DataFrame(schema=NEAREST_SCHEMA)
    if records.height == 0 or others.height == 0:
        return empty
    r_code, o_code = currency_codes(records, others)
    o_ok = o_code >= 0
    if not o_ok.any():
        return empty
    o_line, o_amt, o_day = (others[c].to_numpy() for c in ("line_number", "amount_minor", "day"))
    r_line, r_amt, r_day = (records[c].to_numpy() for c in ("line_number", "amount_minor", "day"))
    first_day = int(o_day[o_ok].min())
    n_days = int(o_day[o_ok].max()) - first_day + 1
    n_codes = int(max(o_code.max(), r_code.max())) + 1
    lowest, highest = int(o_amt[o_ok].min()), int(o_amt[o_ok].max())
    if n_codes * n_days * (highest - lowest + 3) < _KEY_LIMIT:
        # Amounts enter the key as themselves (shifted), which needs no ranking of distinct amounts;
        # a record's amount beyond the other side's is clipped to just below or above every one.
        width = highest - lowest + 3
        o_value = o_amt - lowest + 1
        r_value = np.clip(r_amt - lowest + 1, 0, width - 1)
    else:
        amounts = np.unique(o_amt[o_ok])
        width = len(amounts) + 1
        o_value = np.searchsorted(amounts, o_amt)
        r_value = np.searchsorted(amounts, r_amt, side="left")  # first amount at or above the record's
    # Key (currency, day, amount), ties ordered by line, so the first row of an amount is its lowest
    # line: one sort of a single integer when key and line fit in one, else a two-key sort.
    o_key = np.where(o_ok, (o_code * n_days + (o_day - first_day)) * width + o_value, -1)
    lines = int(o_line.max()) - int(o_line.min()) + 1
    if (n_codes * n_days * width + 1) * lines < _KEY_LIMIT:
        # Unique values: any sort gives the one order (Polars sorts on every core).
        composite = pl.Series((o_key + 1) * lines + (o_line - int(o_line.min())))
        order = composite.arg_sort().cast(pl.Int64).to_numpy()
    else:
        order = np.lexsort((o_line, o_key))
    keys = o_key[order]
    best = _Best(len(r_line))
    for offset in range(-days, days + 1):
        day = r_day + offset - first_day
        idx = np.flatnonzero((r_code >= 0) & (day >= 0) & (day < n_days))
        base = (r_code[idx] * n_days + day[idx]) * width
        run_start = np.searchsorted(keys, base, side="left")
        run_end = np.searchsorted(keys, base + width, side="left")
        at = np.searchsorted(keys, base + r_value[idx], side="left")
        above = at < run_end
        below = at > run_start
        # The key just below the insertion point is the nearest lower amount; its first row is
        # the lowest line of that amount.
        for rows, found in (
            (idx[above], at[above]),
            (idx[below], np.searchsorted(keys, keys[at[below] - 1], side="left")),
        ):
            other = order[found]
            fits = within_tolerance(r_amt[rows], o_amt[other], tolerance)
            rows, other = rows[fits], other[fits]
            best.offer(rows, np.abs(o_amt[other] - r_amt[rows]), abs(offset), o_line[other])
    return pl.DataFrame(
        {"line_number": r_line[best.found], "closest_line": best.line[best.found]}, schema=NEAREST_SCHEMA
    )


class _Best:
    """Per record, the best candidate offered so far: lowest amount difference, then days, then line."""

    def __init__(self, size: int) -> None:
        self.amount = np.zeros(size, dtype=np.int64)
        self.days = np.zeros(size, dtype=np.int64)
        self.line = np.zeros(size, dtype=np.int64)
        self.found = np.zeros(size, dtype=np.bool_)

    def offer(self, rows: Int64Array, amount: Int64Array, days: int, line: Int64Array) -> None:
        """Offer one candidate to each of ``rows`` (distinct)."""
        held_amount, held_days, held_line = self.amount[rows], self.days[rows], self.line[rows]
        better = (
            ~self.found[rows]
            | (amount < held_amount)
            | ((amount == held_amount) & ((days < held_days) | ((days == held_days) & (line < held_line))))
        )
        chosen = rows[better]
        self.amount[chosen], self.days[chosen], self.line[chosen] = amount[better], days, line[better]
        self.found[chosen] = True
