"""A reason built only on the rows that need one reads as the reason built on every row."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.adapters.reasons import first_reason, quoted, sparse_reason


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=30),
    texts=st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=30, max_size=30),
)
def test_sparse_reason_is_first_reason(values: list[int | None], texts: list[str | None]) -> None:
    frame = pl.DataFrame({"n": values, "t": texts[: len(values)]}, schema={"n": pl.Int64, "t": pl.String})
    cases = [
        (pl.col("n").is_null(), pl.lit("n: missing")),
        (pl.col("n") < 0, quoted("t", pl.col("t"), "is negative")),
        (pl.col("n") > 3, pl.format("n: {} is more than 3", pl.col("n"))),
    ]
    sparse = sparse_reason(frame, cases)
    dense = frame.select(first_reason(cases)).to_series()
    assert sparse.to_list() == dense.to_list()
    assert sparse.len() == frame.height
