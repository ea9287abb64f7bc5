"""The write-ahead tail's in-memory view: frames and lookups stay exact as batches are added one by one."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.store.batch import number_batch
from settler_pipeline.store.schema import EVENT_SCHEMA, prepare_frame
from settler_pipeline.store.tail import Tail
from tests.factories import build_frame, uid

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=80))
def test_frame_ids_and_versions_match_every_batch_added_so_far(sizes: list[int]) -> None:
    tail, head, versions = Tail(), 0, {}
    stored: list[pl.DataFrame] = []
    for k, n in enumerate(sizes):
        batch = number_batch(
            prepare_frame(build_frame(n, streams=[uid(1 + k % 3), uid(9)]), now=NOW),
            head=head,
            created_at=NOW,
            versions=versions,
        )
        tail.extend(batch.to_arrow().cast(EVENT_SCHEMA))
        stored.append(batch)
        head += n
        versions = dict(
            pl.concat(stored).group_by("aggregate_id").agg(pl.col("aggregate_version").max()).iter_rows()
        )
        if k % 7 == 0:  # read now and then, as commands between commits do
            assert tail.frame.equals(pl.concat(stored))
    everything = pl.concat(stored)
    assert tail.frame.equals(everything) and tail.chunked_frame().equals(everything)
    assert tail.frame.n_chunks() <= 33
    assert tail.ids == dict(zip(everything["event_id"], everything["global_position"], strict=True))
    assert tail.versions == versions
    assert tail.max_event_id == everything["event_id"].max()
    assert tail.rows == head and tail.last_position == head
