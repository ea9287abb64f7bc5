"""A stream copy's row groups end where streams end, so a stream is read from one small group."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.store.stream_copies import MAX_GROUP_ROWS, ROW_GROUP_SIZE, group_starts


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.one_of(st.integers(1, 400), st.integers(1, 20_000)), min_size=1, max_size=60))
def test_groups_cover_every_row_and_split_no_stream_short_of_the_cap(lengths: list[int]) -> None:
    ids = pl.Series([f"s{k}" for k, n in enumerate(lengths) for _ in range(n)])
    starts = group_starts(ids)
    rows = len(ids)
    assert starts[0] == 0 and starts == sorted(set(starts)) and starts[-1] < rows
    ends = [*starts[1:], rows]
    assert all(end - start <= MAX_GROUP_ROWS for start, end in zip(starts, ends, strict=True))
    # about one group per ROW_GROUP_SIZE rows, not one per stream
    assert len(starts) <= rows // ROW_GROUP_SIZE + rows // MAX_GROUP_ROWS + 1
    first = 0
    for n in lengths:  # a stream is split only where the cap falls inside it
        inside = [s for s in starts if first < s < first + n]
        assert all(s % MAX_GROUP_ROWS == 0 for s in inside)
        first += n
