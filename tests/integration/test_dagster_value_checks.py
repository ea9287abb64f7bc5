"""The read models' values checks fail on values their columns cannot hold: a negative count, a rate
or a score outside [0, 1] (docs/read-models.md)."""

from __future__ import annotations

import polars as pl
import pytest

from dagster_project.assets import impossible_values


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (pl.DataFrame({"matched": [3, -1]}), "matched < 0"),
        (pl.DataFrame({"match_rate": [0.5, 1.2]}), "match_rate outside [0, 1]"),
        (pl.DataFrame({"confidence": [0.9, 1.5, None]}), "confidence outside [0, 1]"),
        (pl.DataFrame({"confidence": [-0.1]}), "confidence outside [0, 1]"),
    ],
)
def test_a_value_a_column_cannot_hold_is_a_problem(frame: pl.DataFrame, problem: str) -> None:
    assert impossible_values(frame) == [problem]


def test_possible_values_and_negative_amounts_are_no_problem() -> None:
    frame = pl.DataFrame(
        {"amount": [-500, 200], "confidence": [0.0, None], "match_rate": [1.0, 0.0], "attempt": [1, 2]}
    )
    assert impossible_values(frame) == []
