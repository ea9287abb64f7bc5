"""A match rate earns a warning exactly when it is below the threshold or falls more than the allowed
drop under the recent average."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.metrics import assess_match_rate

rates = st.floats(min_value=0, max_value=1, allow_nan=False)


def test_a_low_rate_and_a_sharp_drop_are_both_named() -> None:
    reasons = assess_match_rate(0.5, [0.95, 0.97], threshold=0.8, max_drop=0.1)
    assert len(reasons) == 2
    assert "below the threshold" in reasons[0] and "recent average" in reasons[1]
    assert assess_match_rate(0.85, [0.97, 0.99], threshold=0.8, max_drop=0.1)  # a drop alone
    assert assess_match_rate(0.95, [], threshold=0.8, max_drop=0.1) == []  # no history: threshold only


@given(rate=rates, recent=st.lists(rates, max_size=7), threshold=rates, drop=rates)
def test_a_warning_exactly_when_below_the_threshold_or_the_average_minus_the_drop(
    rate: float, recent: list[float], threshold: float, drop: float
) -> None:
    reasons = assess_match_rate(rate, recent, threshold=threshold, max_drop=drop)
    dropped = bool(recent) and sum(recent) / len(recent) - rate > drop
    assert bool(reasons) == (rate < threshold or dropped)
