"""A stream's rows out of a row group: the byte search over a stream copy's grouped ids gives exactly
what a row-by-row filter gives, whatever the ids, types, versions and their order."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.stream_reads import NO_LIMIT, stream_part
from tests.factories import build_event, uid, utc

# ids of one width (UUIDs) and of other widths, which the byte search must leave to the filter
IDS = [uid(1), uid(2), uid(3), "short", "x" * 36 + "y"]
ROWS = st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(["loan", "loans"])), max_size=40)


def _table(rows: list[tuple[str, str]]) -> pa.Table:
    return pa.table(
        {
            "aggregate_id": pa.array([r[0] for r in rows], pa.large_string()),
            "aggregate_type": pa.array([r[1] for r in rows], pa.large_string()),
            "aggregate_version": pa.array(list(range(1, len(rows) + 1)), pa.int64()),
        }
    )


@settings(max_examples=200, deadline=None)
@given(
    rows=ROWS,
    grouped=st.booleans(),
    wanted=st.sampled_from(IDS),
    kind=st.sampled_from(["loan", "loans"]),
    low=st.integers(1, 45),
    span=st.integers(0, 45),
    start=st.integers(0, 5),
)
def test_a_copy_s_run_is_what_a_filter_finds(
    rows: list[tuple[str, str]], grouped: bool, wanted: str, kind: str, low: int, span: int, start: int
) -> None:
    if grouped:  # as a stream copy holds them: each stream's rows together
        rows = sorted(rows, key=lambda r: IDS.index(r[0]))
    table = _table(rows).slice(min(start, len(rows)))  # a slice: the arrays start at an offset
    high = NO_LIMIT if span == 45 else low + span
    got = stream_part(table, wanted, kind, low, high, clustered=True)
    expected = stream_part(table, wanted, kind, low, high, clustered=False)
    assert got.to_pylist() == expected.to_pylist()


def test_events_of_one_commit_share_their_metadata_but_never_extra_keys(tmp_path: Path) -> None:
    stream, when, flow = uid(7), utc(2026, 11, 1), uid(8, kind=0xC)
    plain = [build_event(stream, timestamp=when, correlation_id=flow) for _ in range(3)]
    tagged = [build_event(stream, timestamp=when, correlation_id=flow, source="bank") for _ in range(2)]
    with EventStore.open(tmp_path / "data") as store:
        store.append([*plain, *tagged])
        events = store.get_events(stream, "Thing")
    assert [e.metadata for e in events] == [e.metadata for e in [*plain, *tagged]]
    assert events[0].metadata is events[1].metadata is events[2].metadata
    assert events[3].metadata is not events[4].metadata
    assert events[3].metadata.model_extra is not events[4].metadata.model_extra
    assert [e.data for e in events] == [e.data for e in [*plain, *tagged]]
