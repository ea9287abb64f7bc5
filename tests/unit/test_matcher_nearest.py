"""The nearest counterpart of each record (what unmatched records are explained against) is the one a
brute-force search over every pair ranks first: amount difference, then days apart, then line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.matching import Tolerance
from settler_pipeline.domain.matching.nearest import nearest_counterparts
from settler_pipeline.domain.matching.tolerance import within_tolerance
from settler_pipeline.errors import ValidationError
from tests.profiles import examples

record = st.fixed_dictionaries(
    {
        "amount_minor": st.sampled_from([-300, -100, 0, 99, 100, 101, 150, 200, 5000]),
        "currency": st.sampled_from(["EUR", "USD", None]),
        "day": st.integers(20000, 20010),
    }
)
tolerance = st.builds(
    Tolerance,
    absolute_minor=st.sampled_from([0, 1, 60]),
    percent=st.sampled_from([Decimal(0), Decimal(10), Decimal(50)]),
    combine=st.sampled_from(["either", "both"]),
)


def frame(rows: list[dict[str, Any]], first_line: int) -> pl.DataFrame:
    schema = {"amount_minor": pl.Int64, "currency": pl.String, "day": pl.Int64}
    lines = pl.Series("line_number", range(first_line, first_line + len(rows)), dtype=pl.Int64)
    return pl.DataFrame(rows, schema=schema).with_columns(lines.reverse())  # lines not in row order


def brute_force(
    records: pl.DataFrame, others: pl.DataFrame, tol: Tolerance, days: int
) -> set[tuple[int, int]]:
    found = set()
    for r in records.iter_rows(named=True):
        ranked = []
        for o in others.iter_rows(named=True):
            near = abs(o["day"] - r["day"]) <= days
            fits = within_tolerance([r["amount_minor"]], [o["amount_minor"]], tol)[0]  # type: ignore[list-item]
            if r["currency"] is not None and o["currency"] == r["currency"] and near and fits:
                distance = abs(o["amount_minor"] - r["amount_minor"])
                ranked.append((distance, abs(o["day"] - r["day"]), o["line_number"]))
        if ranked:
            found.add((r["line_number"], min(ranked)[2]))
    return found


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(record, max_size=12), st.lists(record, max_size=30), tolerance, st.integers(0, 4))
def test_the_nearest_counterpart_is_the_first_of_every_candidate_ranked(
    mine: list[dict[str, Any]], theirs: list[dict[str, Any]], tol: Tolerance, days: int
) -> None:
    records, others = frame(mine, 1), frame(theirs, 100)
    found = nearest_counterparts(records, others, tolerance=tol, days=days)
    assert set(found.iter_rows()) == brute_force(records, others, tol, days)
    assert found["line_number"].is_unique().all()


def test_equal_amounts_and_days_are_told_apart_by_the_lowest_line_on_either_side() -> None:
    records = pl.DataFrame({"line_number": [1], "amount_minor": [100], "currency": ["EUR"], "day": [5]})
    below = pl.DataFrame(
        {
            "line_number": [30, 20, 10],
            "amount_minor": [98, 98, 102],
            "currency": ["EUR"] * 3,
            "day": [5, 5, 6],
        }
    )
    found = nearest_counterparts(records, below, tolerance=Tolerance(absolute_minor=5), days=3)
    assert found.rows() == [(1, 20)]


def test_a_tolerance_on_the_counterpart_amount_is_refused() -> None:
    empty = pl.DataFrame(
        schema={"line_number": pl.Int64, "amount_minor": pl.Int64, "currency": pl.String, "day": pl.Int64}
    )
    with pytest.raises(ValidationError, match="own amount"):
        nearest_counterparts(
            empty, empty, tolerance=Tolerance(percent=Decimal(5), percent_of="target"), days=1
        )
