"""Amount tolerances and date windows, in exact integer arithmetic.

The formula is the one stated in :mod:`settler_pipeline.domain.matching.config`::

    pct_allowed = floor(abs(base) * percent / 100)      # base = s or t, per ``percent_of``
    allowed = max(absolute_minor, pct_allowed)  if combine == "either"
            = min(absolute_minor, pct_allowed)  if combine == "both"

``percent / 100`` is ``percent_millionths / 1_000_000`` (at most four decimal places of percent), and
the product is split into quotient and remainder so it never overflows ``int64`` for any amount the
matcher accepts (``abs(amount) <= MAX_ABS_AMOUNT_MINOR``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from settler_pipeline.domain.matching.config import DateWindow, Tolerance

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAX_ABS_AMOUNT_MINOR = 10**15
"""Largest accepted absolute amount (10^13 major units): keeps every difference and product in int64."""

_MILLION = 1_000_000


def _floor_mul_div(value: Int64Array, numerator: int, denominator: int) -> Int64Array:
    """``floor(value * numerator / denominator)`` for non-negative ``value`` without overflow,
    provided ``numerator <= denominator <= 10**6`` or the result itself fits in int64."""
    quotient, remainder = np.divmod(value, denominator)
    return np.asarray(quotient * numerator + (remainder * numerator) // denominator, dtype=np.int64)


def allowed_difference(base: Int64Array, tolerance: Tolerance) -> Int64Array:
    """The allowed absolute difference for each ``base`` amount (exactly the documented formula)."""
    absolute = np.int64(tolerance.absolute_minor)
    if tolerance.percent_millionths == 0:
        # No percentage (most passes): pct_allowed is 0, so no division per amount.
        fixed = absolute if tolerance.combine == "either" else np.int64(0)
        return np.full(np.shape(base), fixed, dtype=np.int64)
    base_abs = np.abs(np.asarray(base, dtype=np.int64))
    pct = _floor_mul_div(base_abs, tolerance.percent_millionths, _MILLION)
    if tolerance.combine == "either":
        return np.maximum(pct, absolute)
    return np.minimum(pct, absolute)


def within_tolerance(source: Int64Array, target: Int64Array, tolerance: Tolerance) -> BoolArray:
    """For aligned pairs of amounts: is ``abs(target - source) <= allowed`` (base per ``percent_of``)?"""
    source = np.asarray(source, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    if tolerance.percent_millionths == 0:
        fixed = tolerance.absolute_minor if tolerance.combine == "either" else 0
        return np.asarray(np.abs(target - source) <= fixed, dtype=np.bool_)
    base = source if tolerance.percent_of == "source" else target
    return np.asarray(np.abs(target - source) <= allowed_difference(base, tolerance), dtype=np.bool_)


def search_radius(source: Int64Array, tolerance: Tolerance) -> Int64Array:
    """A radius ``r`` per source amount such that every target within tolerance lies in
    ``[s - r, s + r]``.

    Exact when the percentage is taken on the source; when it is taken on the (unknown) target the
    bound is conservative (``|t| <= |s| + |t - s|`` gives ``|t - s| <= |s| p / (1 - p)``), and callers
    filter candidates with :func:`within_tolerance` afterwards.
    """
    source = np.asarray(source, dtype=np.int64)
    if tolerance.percent_of == "source":
        return allowed_difference(source, tolerance)
    absolute = np.int64(tolerance.absolute_minor)
    units = tolerance.percent_millionths
    if 2 * units >= _MILLION:
        # 50 % or more of the target: the bound is meaningless, search the whole amount range.
        pct_bound = np.full(source.shape, 2 * MAX_ABS_AMOUNT_MINOR, dtype=np.int64)
    else:
        # ceil(|s| * u / (M - u)); u / (M - u) < 1 keeps the quotient part below |s|.
        denominator = _MILLION - units
        quotient, remainder = np.divmod(np.abs(source), denominator)
        pct_bound = quotient * units + -((-(remainder * units)) // denominator)
    if tolerance.combine == "either":
        return np.asarray(np.maximum(pct_bound, absolute), dtype=np.int64)
    return np.asarray(np.minimum(pct_bound, absolute), dtype=np.int64)


def within_window(day_difference: Int64Array, window: DateWindow) -> BoolArray:
    """For ``target_day - source_day``: does the target fall inside the window (inclusive)?"""
    diff = np.asarray(day_difference, dtype=np.int64)
    return np.asarray((diff >= -window.days_before) & (diff <= window.days_after), dtype=np.bool_)
