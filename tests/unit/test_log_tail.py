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


def test_a_stream_run_in_a_copy_is_sliced_and_interleaved_streams_are_gathered() -> None:
    """A copy groups streams by their id's hash: a stream's rows are one run, sliced out as they are;
    two streams whose ids shared a hash would interleave, and each still loads exactly its rows."""
    import pyarrow as pa

    from settler_pipeline.store.stream_reads import NO_LIMIT, stream_part

    def rows(ids: list[str], versions: list[int]) -> pa.Table:
        return pa.table(
            {
                "global_position": list(range(1, len(ids) + 1)),
                "aggregate_version": versions,
                "aggregate_id": ids,
                "aggregate_type": ["T"] * len(ids),
            }
        )

    grouped = rows(["b", "a", "a", "a", "c"], [1, 1, 2, 3, 1])
    part = stream_part(grouped, "a", "T", 1, NO_LIMIT, clustered=True)
    assert part.column("global_position").to_pylist() == [2, 3, 4]
    assert stream_part(grouped, "a", "T", 2, 2, clustered=True).column("aggregate_version").to_pylist() == [2]
    assert stream_part(grouped, "z", "T", 1, NO_LIMIT, clustered=True).num_rows == 0
    assert stream_part(grouped, "a", "U", 1, NO_LIMIT, clustered=True).num_rows == 0
    interleaved = rows(["a", "b", "a", "b"], [1, 1, 2, 2])
    assert stream_part(interleaved, "a", "T", 1, NO_LIMIT, clustered=True).column(
        "global_position"
    ).to_pylist() == [1, 3]
    assert stream_part(interleaved, "b", "T", 1, NO_LIMIT, clustered=False).column(
        "global_position"
    ).to_pylist() == [2, 4]
