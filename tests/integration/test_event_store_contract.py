"""The event store's contract: what every caller of append / read / get_events / snapshots may rely on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest
from deltalake import DeltaTable

from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.errors import ConcurrencyError, DuplicateEventError, InvalidIdError, ValidationError
from settler_pipeline.store import limits, maintenance
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import (
    OTHER_TENANT,
    TENANT,
    MakeEvent,
    MakeFrame,
    build_event,
    bulk_batches_to_segments,
    uid,
    utc,
)

OpenStore = Callable[..., EventStore]


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def all_events(store: EventStore) -> pl.DataFrame:
    return store.read().collect()


def log_files(store: EventStore) -> dict[str, tuple[int, int]]:
    """Every file of the committed log (segments, the Delta log, write-ahead log) with size and mtime."""
    files = [*store.segments_dir.rglob("*"), *store.wal_dir.rglob("*")]
    return {
        str(p.relative_to(store.root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()
    }


def segment_files(store: EventStore) -> list[Path]:
    return sorted(store.segments_dir.rglob("*.parquet"))


def assert_gap_free(store: EventStore) -> pl.DataFrame:
    events = all_events(store)
    assert events["global_position"].to_list() == list(range(1, store.head_position + 1))
    return events


# -- appending -------------------------------------------------------------------------------------


def test_appended_positions_are_gap_free_and_follow_commit_order(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    assert store.head_position == 0
    batches: list[list[str]] = []
    returned: list[int] = []
    for size in (1, 3, 2):
        events = [make_event() for _ in range(size)]
        returned += store.append(events)
        batches.append([e.id for e in events])
    frame = make_frame(10)
    returned += store.append_frame(frame)
    batches.append(frame["event_id"].to_list())
    bulk = [make_event() for _ in range(BULK_ROWS)]
    returned += store.append(bulk)
    batches.append([e.id for e in bulk])
    returned += store.append([single := make_event()])
    batches.append([single.id])

    total = sum(len(b) for b in batches)
    assert returned == list(range(1, total + 1))
    assert store.head_position == total
    stored = assert_gap_free(store)
    assert stored["event_id"].to_list() == [i for batch in batches for i in batch]


def test_every_stream_counts_its_versions_from_one(store: EventStore, make_event: MakeEvent) -> None:
    a, b, c = uid(1), uid(2), uid(3)
    order = [a, b, a, c, b, a]
    store.append([make_event(s) for s in order])
    store.append([make_event(b), make_event(a)])
    store.append_frame(
        pl.DataFrame(
            {
                "aggregate_id": [c, c, a],
                "aggregate_type": "Thing",
                "event_type": "ThingHappened",
                "data": "{}",
                "tenant_id": TENANT,
                "correlation_id": uid(1, kind=0xC),
            }
        )
    )
    events = all_events(store)
    versions = events.group_by("aggregate_id", maintain_order=True).agg(pl.col("aggregate_version"))
    assert dict(versions.iter_rows()) == {a: [1, 2, 3, 4, 5], b: [1, 2, 3], c: [1, 2, 3]}
    for stream, n in ((a, 5), (b, 3), (c, 3)):
        assert [e.aggregate_version for e in store.get_events(stream, "Thing")] == list(range(1, n + 1))


@pytest.mark.parametrize("flavour", ["polars", "arrow", "append"])
def test_a_columnar_batch_is_stored_like_envelopes(store: EventStore, flavour: str) -> None:
    stream = uid(7)
    frame = pl.DataFrame(
        {
            "event_id": [uid(1, kind=0xE), uid(2, kind=0xE)],
            "aggregate_id": [stream, stream],
            "aggregate_type": ["Record", "Record"],
            "event_type": ["RecordMatched", "RecordUnmatched"],
            "event_version": [2, 1],
            "data": [json.dumps({"amount": 5, "ref": "x"}), "{}"],
            "tenant_id": [TENANT, TENANT],
            "user_id": ["alice", None],
            "correlation_id": [uid(1, kind=0xC), uid(1, kind=0xC)],
            "causation_id": [None, uid(1, kind=0xE)],
            "timestamp": pl.Series(
                [utc(2026, 11, 1, 9), utc(2026, 11, 1, 10)], dtype=pl.Datetime("us", "UTC")
            ),
            "metadata_extra": [json.dumps({"source": "bank"}), None],
        }
    )
    if flavour == "polars":
        positions = store.append_frame(frame)
    elif flavour == "arrow":
        arrow = frame.to_arrow()
        assert isinstance(arrow, pa.Table)
        positions = store.append_frame(arrow)
    else:
        positions = store.append(frame)
    assert positions == [1, 2]
    first, second = store.get_events(stream, "Record")
    assert (first.id, first.event_type, first.event_version) == (uid(1, kind=0xE), "RecordMatched", 2)
    assert first.data == {"amount": 5, "ref": "x"}
    assert first.metadata.user_id == "alice"
    assert first.metadata.extra_fields() == {"source": "bank"}
    assert first.metadata.timestamp == utc(2026, 11, 1, 9)
    assert (first.global_position, first.aggregate_version) == (1, 1)
    assert second.metadata.causation_id == first.id
    assert second.metadata.user_id is None and second.metadata.extra_fields() == {}
    assert (second.global_position, second.aggregate_version) == (2, 2)


def test_a_columnar_batch_gets_defaults_for_optional_columns(store: EventStore) -> None:
    stream = uid(8)
    frame = pl.DataFrame(
        {
            "aggregate_id": [stream] * 3,
            "aggregate_type": "Record",
            "event_type": "RecordMatched",
            "data": ['{"k":1}'] * 3,
            "tenant_id": TENANT,
            "correlation_id": uid(2, kind=0xC),
        }
    )
    before = time.time()
    store.append_frame(frame)
    events = store.get_events(stream, "Record")
    assert len({e.id for e in events}) == 3
    assert all(e.event_version == 1 and e.metadata.causation_id is None for e in events)
    assert all(e.metadata.timestamp.timestamp() >= before - 1 for e in events)


def test_envelopes_read_back_with_everything_the_writer_chose(
    store: EventStore, make_event: MakeEvent
) -> None:
    original = make_event(
        uid(5),
        "PaymentSeen",
        aggregate_type="Payment",
        data={"amount": 10, "nested": {"b": [1, 2], "a": None}},
        user_id="bob",
        correlation_id=uid(4, kind=0xC),
        causation_id=uid(99, kind=0xE),
        timestamp=utc(2026, 10, 31, 23, 59),
        event_version=3,
        source="import",
        attempt=2,
    )
    store.append([original])
    (stored,) = store.get_events(uid(5), "Payment")
    assert stored.content_key() == original.content_key()
    assert stored.metadata.timestamp == original.metadata.timestamp
    assert stored.global_position == 1 and stored.aggregate_version == 1
    assert stored.created_at.utcoffset() == timedelta(0)


def test_appending_an_empty_batch_writes_nothing(store: EventStore, make_frame: MakeFrame) -> None:
    before = log_files(store)
    assert store.append([]) == []
    assert store.append_frame(make_frame(0)) == []
    assert store.head_position == 0
    assert log_files(store) == before


# -- optimistic concurrency ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["small", "bulk", "frame"])
def test_a_conflicting_expected_version_writes_nothing(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame, path: str
) -> None:
    stream, other = uid(1), uid(2)
    store.append([make_event(stream), make_event(stream)])
    before_files = log_files(store)
    before = all_events(store)
    if path == "small":
        batch: Any = [make_event(other), make_event(stream)]
    elif path == "bulk":
        batch = [make_event(other) for _ in range(BULK_ROWS)] + [make_event(stream)]
    else:
        batch = make_frame(5, streams=[other, stream])
    with pytest.raises(ConcurrencyError) as caught:
        store.append(batch, expected_versions={other: 0, stream: 1})
    error = caught.value
    assert (error.aggregate_id, error.expected, error.actual) == (stream, 1, 2)
    assert stream in str(error) and "expected version 1" in str(error) and "actual version 2" in str(error)
    assert store.head_position == 2
    assert all_events(store).equals(before)
    assert store.get_events(other, "Thing") == [] and store.get_events(other, "Record") == []
    assert log_files(store) == before_files


def test_expected_version_zero_means_the_stream_must_be_new(store: EventStore, make_event: MakeEvent) -> None:
    stream = uid(1)
    assert store.append([make_event(stream)], expected_versions={stream: 0}) == [1]
    with pytest.raises(ConcurrencyError) as caught:
        store.append([make_event(stream)], expected_versions={stream: 0})
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert store.append([make_event(stream)], expected_versions={stream: 1}) == [2]


def test_a_batch_across_several_streams_commits_all_or_nothing(
    store: EventStore, make_event: MakeEvent
) -> None:
    a, b, c = uid(1), uid(2), uid(3)
    store.append([make_event(a)])
    batch = [make_event(a), make_event(b), make_event(c), make_event(b)]
    with pytest.raises(ConcurrencyError):
        store.append(batch, expected_versions={a: 1, b: 0, c: 1})
    assert store.head_position == 1
    assert store.append(batch, expected_versions={a: 1, b: 0, c: 0}) == [2, 3, 4, 5]
    assert [e.aggregate_version for e in store.get_events(b, "Thing")] == [1, 2]
    assert all_events(store)["event_id"].to_list()[1:] == [e.id for e in batch]


def test_expected_versions_can_guard_a_stream_the_batch_does_not_touch(
    store: EventStore, make_event: MakeEvent
) -> None:
    guard, target = uid(1), uid(2)
    store.append([make_event(guard)])
    with pytest.raises(ConcurrencyError) as caught:
        store.append([make_event(target)], expected_versions={guard: 0})
    assert caught.value.aggregate_id == guard
    assert store.head_position == 1
    assert store.append([make_event(target)], expected_versions={guard: 1}) == [2]


def test_expected_versions_see_events_already_moved_into_segments(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    stream = uid(1)
    writer = open_store()
    writer.append([make_event(stream)])
    writer.append_frame(make_frame(BULK_ROWS, streams=[stream, uid(2)], aggregate_type="Thing"))
    maintenance.compact(writer)
    assert writer.wal_dir.exists() and not any(writer.wal_dir.iterdir())
    fresh = open_store()  # nothing cached: versions come from the index
    with pytest.raises(ConcurrencyError) as caught:
        fresh.append([make_event(stream)], expected_versions={stream: 1})
    assert caught.value.actual == 1 + BULK_ROWS // 2
    assert fresh.append([make_event(stream)], expected_versions={stream: 1 + BULK_ROWS // 2}) == [
        BULK_ROWS + 2
    ]


@pytest.mark.parametrize("other_writes", ["small", "bulk"])
def test_a_store_instance_sees_versions_written_by_another_instance(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, other_writes: str
) -> None:
    stream = uid(1)
    first, second = open_store(), open_store()
    first.append([make_event(stream)], expected_versions={stream: 0})
    if other_writes == "small":
        second.append([make_event(stream), make_event(stream)], expected_versions={stream: 1})
        now = 3
    else:
        second.append_frame(make_frame(BULK_ROWS, streams=[stream], aggregate_type="Thing"))
        now = 1 + BULK_ROWS
    with pytest.raises(ConcurrencyError) as caught:
        first.append([make_event(stream)], expected_versions={stream: 1})
    assert caught.value.actual == now
    first.append([make_event(stream)], expected_versions={stream: now})
    versions = [e.aggregate_version for e in second.get_events(stream, "Thing")]
    assert versions == list(range(1, now + 2))


@pytest.mark.parametrize("other_writes", ["small", "bulk", "compaction"])
def test_an_instance_appends_after_events_another_instance_committed(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, other_writes: str
) -> None:
    first, second = open_store(), open_store()
    first.append([make_event()])
    if other_writes == "small":
        second.append([make_event(), make_event()])
    elif other_writes == "bulk":
        second.append_frame(make_frame(BULK_ROWS))
    else:
        second.append([make_event(), make_event()])
        maintenance.compact(second)
    head = second.head_position
    assert first.head_position == head
    assert first.append([late := make_event()]) == [head + 1]
    third = open_store()
    assert third.head_position == head + 1
    assert all_events(third)["event_id"][-1] == late.id
    assert_gap_free(third)
    assert maintenance.verify(third).ok


def test_an_empty_batch_still_checks_expected_versions(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    store.append([make_event(uid(1))])
    with pytest.raises(ConcurrencyError):
        store.append([], expected_versions={uid(1): 0})
    with pytest.raises(ConcurrencyError):
        store.append_frame(make_frame(0), expected_versions={uid(1): 3})
    assert store.append([], expected_versions={uid(1): 1}) == []
    assert store.head_position == 1


def test_ids_are_stored_in_lower_case_and_a_retry_in_another_case_is_the_same_event(
    store: EventStore, make_frame: MakeFrame
) -> None:
    upper = [uid(k, kind=0xE).upper().replace("0000000E", "ABCDEF0E") for k in range(3)]
    frame = make_frame(3, streams=[uid(1).upper()], event_ids=upper)
    positions = store.append_frame(frame)
    stored = all_events(store)
    assert stored["event_id"].to_list() == [i.lower() for i in upper]
    assert stored["aggregate_id"].to_list() == [uid(1)] * 3
    assert store.append_frame(frame.with_columns(pl.col("event_id").str.to_lowercase())) == positions
    assert store.head_position == 3
    assert len(store.get_events(uid(1).upper(), "Record")) == 3


# -- reading ---------------------------------------------------------------------------------------


def test_get_events_returns_one_stream_in_version_order_within_a_range(
    store: EventStore, make_event: MakeEvent
) -> None:
    stream = uid(1)
    for k in range(4):
        store.append(
            [
                make_event(stream, data={"k": 2 * k}),
                make_event(uid(2)),
                make_event(stream, data={"k": 2 * k + 1}),
            ]
        )
    assert [e.data["k"] for e in store.get_events(stream, "Thing")] == list(range(8))
    assert [e.aggregate_version for e in store.get_events(stream, "Thing", from_version=3, to_version=5)] == [
        3,
        4,
        5,
    ]
    assert [e.aggregate_version for e in store.get_events(stream, "Thing", from_version=7)] == [7, 8]
    assert [e.aggregate_version for e in store.get_events(stream, "Thing", to_version=2)] == [1, 2]
    assert store.get_events(stream, "Thing", from_version=9) == []
    assert store.get_events(stream, "OtherType") == []
    assert store.get_events(uid(404), "Thing") == []


def test_get_events_reads_streams_spread_over_segments_and_the_write_ahead_log(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    stream = uid(1)
    store.append([make_event(stream)])
    store.append_frame(make_frame(BULK_ROWS + 10, streams=[stream, uid(2), uid(3)], aggregate_type="Thing"))
    store.append([make_event(stream), make_event(stream)])
    assert segment_files(store) and any(store.wal_dir.iterdir())
    events = store.get_events(stream, "Thing")
    assert [e.aggregate_version for e in events] == list(range(1, len(events) + 1))
    assert len(events) == 1 + (BULK_ROWS + 10 + 2) // 3 + 2
    assert [e.global_position for e in events] == sorted(e.global_position for e in events)  # type: ignore[type-var]


def test_get_events_by_correlation_id_returns_one_flow_in_log_order(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    flow, other_flow = uid(1, kind=0xC), uid(2, kind=0xC)
    store.append([make_event(correlation_id=flow), make_event(correlation_id=other_flow)])
    store.append_frame(make_frame(BULK_ROWS, correlation_id=flow))
    store.append([make_event(correlation_id=other_flow), make_event(correlation_id=flow)])
    found = store.get_events_by_correlation_id(flow)
    positions = [e.global_position for e in found]
    assert positions == [1, *range(3, BULK_ROWS + 3), BULK_ROWS + 4]
    assert all(e.metadata.correlation_id == flow for e in found)
    assert [e.global_position for e in store.get_events_by_correlation_id(other_flow)] == [2, BULK_ROWS + 3]
    assert store.get_events_by_correlation_id(uid(3, kind=0xC)) == []


@pytest.mark.parametrize("layout", ["write-ahead log", "segments", "both"])
def test_the_causation_chain_holds_ancestors_and_descendants(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame, layout: str
) -> None:
    command_id = uid(1, kind=0xD)  # the first cause is a command, not an event
    e = {n: uid(n, kind=0xE) for n in range(1, 8)}
    root = make_event(event_id=e[1], causation_id=command_id)
    child = make_event(event_id=e[2], causation_id=e[1])
    grandchildren = [
        make_event(event_id=e[3], causation_id=e[2]),
        make_event(event_id=e[4], causation_id=e[2]),
    ]
    sibling = make_event(event_id=e[5], causation_id=e[1])
    great = make_event(event_id=e[6], causation_id=e[4])
    unrelated = make_event(event_id=e[7])
    store.append([root, child])
    if layout == "both":
        store.append_frame(make_frame(BULK_ROWS))  # root and child move into a segment
    store.append([*grandchildren, sibling])
    store.append([great, unrelated])
    if layout == "segments":
        maintenance.compact(store)
        assert not any(store.wal_dir.iterdir())

    def chain(event_id: str) -> list[str]:
        return [ev.id for ev in store.get_causation_chain(event_id)]

    assert chain(e[2]) == [e[1], e[2], e[3], e[4], e[6]]
    assert chain(e[1]) == [e[1], e[2], e[3], e[4], e[5], e[6]]
    assert chain(e[6]) == [e[1], e[2], e[4], e[6]]
    assert chain(e[7]) == [e[7]]
    assert chain(uid(404, kind=0xE)) == []
    positions = [ev.global_position for ev in store.get_causation_chain(e[1])]
    assert positions == sorted(positions)  # type: ignore[type-var]


def test_read_filters_by_position_range_event_type_and_tenant(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    store.append([make_event(event_type="A"), make_event(event_type="B", tenant_id=OTHER_TENANT)])
    store.append_frame(make_frame(BULK_ROWS, event_type="C"))
    store.append([make_event(event_type="A", tenant_id=OTHER_TENANT), make_event(event_type="B")])
    head = BULK_ROWS + 4
    assert all_events(store)["global_position"].to_list() == list(range(1, head + 1))
    window = store.read(from_position=1, to_position=5).collect()
    assert window["global_position"].to_list() == [2, 3, 4, 5]
    tail = store.read(from_position=head - 2).collect()
    assert tail["global_position"].to_list() == [head - 1, head]
    assert store.read(event_types=["A", "B"]).collect()["global_position"].to_list() == [1, 2, head - 1, head]
    other = store.read(tenant_id=OTHER_TENANT).collect()
    assert other["global_position"].to_list() == [2, head - 1]
    both = store.read(event_types=["A"], tenant_id=TENANT).collect()
    assert both["global_position"].to_list() == [1]
    assert store.read(from_position=head).collect().height == 0
    assert store.read(to_position=0).collect().height == 0
    assert set(all_events(store).columns) >= {"global_position", "event_id", "data", "created_at"}


def test_the_head_is_zero_for_an_empty_log_and_the_newest_position_after_appends(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    assert store.head_position == 0
    assert all_events(store).height == 0
    store.append([make_event()])
    assert store.head_position == 1
    store.append_frame(make_frame(BULK_ROWS))
    assert store.head_position == 1 + BULK_ROWS


# -- snapshots -------------------------------------------------------------------------------------


def test_the_latest_snapshot_wins_and_can_be_asked_for_by_schema_version(
    open_store: OpenStore, make_event: MakeEvent
) -> None:
    store = open_store()
    stream = uid(1)
    assert store.get_latest_snapshot(stream, "Thing") is None
    store.save_snapshot(stream, "Thing", 2, {"total": 2}, schema_version=1, global_position=2)
    store.save_snapshot(stream, "Thing", 5, {"total": 5}, schema_version=1, global_position=9)
    store.save_snapshot(stream, "Thing", 4, {"sum": 4}, schema_version=2)
    store.save_snapshot(uid(2), "Thing", 7, {"total": 7}, schema_version=1)

    latest = store.get_latest_snapshot(stream, "Thing")
    assert latest is not None
    assert (latest.aggregate_version, latest.schema_version, latest.state) == (5, 1, {"total": 5})
    assert latest.global_position == 9
    v2 = store.get_latest_snapshot(stream, "Thing", schema_version=2)
    assert v2 is not None and (v2.aggregate_version, v2.state) == (4, {"sum": 4})
    assert store.get_latest_snapshot(stream, "Thing", schema_version=3) is None
    assert store.get_latest_snapshot(stream, "Other") is None

    reopened = open_store().get_latest_snapshot(stream, "Thing", schema_version=1)
    assert reopened is not None and reopened.state == {"total": 5}


def test_events_after_a_snapshot_are_the_stream_tail(store: EventStore, make_event: MakeEvent) -> None:
    stream = uid(1)
    store.append([make_event(stream, data={"k": k}) for k in range(6)])
    store.save_snapshot(stream, "Thing", 4, {"k_max": 3}, schema_version=1, global_position=4)
    snapshot = store.get_latest_snapshot(stream, "Thing")
    assert snapshot is not None
    after = store.get_events_after_snapshot(stream, "Thing", snapshot.aggregate_version)
    assert [(e.aggregate_version, e.data["k"]) for e in after] == [(5, 4), (6, 5)]
    assert store.get_events_after_snapshot(stream, "Thing", 6) == []


# -- where events go: write-ahead log, segments, date partitions -----------------------------------


def test_small_commits_go_to_the_write_ahead_log(store: EventStore, make_event: MakeEvent) -> None:
    for _ in range(5):
        store.append([make_event(), make_event()])
    assert segment_files(store) == []
    wal_files = list(store.wal_dir.iterdir())
    assert len(wal_files) == 1 and wal_files[0].stat().st_size > 0
    assert_gap_free(store)
    assert maintenance.verify(store).ok


@pytest.mark.parametrize("columnar", [False, True])
def test_a_big_batch_goes_straight_to_a_segment_taking_the_tail_along(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame, columnar: bool
) -> None:
    store.append([make_event(), make_event()])
    if columnar:
        store.append_frame(make_frame(BULK_ROWS))
    else:
        store.append([make_event(uid(k % 7)) for k in range(BULK_ROWS)])
    files = segment_files(store)
    assert len(files) == 1
    assert pq.read_metadata(files[0]).num_rows == BULK_ROWS + 2
    assert not any(store.wal_dir.iterdir())
    assert_gap_free(store)
    assert maintenance.verify(store).ok


def test_commits_crossing_the_flush_threshold_move_the_tail_into_segments(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "WAL_FLUSH_ROWS", 20)
    store = open_store()
    streams = [uid(k) for k in range(3)]
    sizes = [3, 5, 4, 7, 2, 6, 3, 9, 1, 5, 8, 2]
    for k, size in enumerate(sizes):
        if k % 3 == 2:
            store.append_frame(make_frame(size, streams=streams, aggregate_type="Thing"))
        else:
            store.append([make_event(streams[(k + j) % 3]) for j in range(size)])
        tail_rows = store._refresh().tail.rows
        assert tail_rows < 20
    total = sum(sizes)
    assert len(segment_files(store)) >= 2
    assert 0 < store._refresh().tail.rows < total
    store.append_frame(make_frame(BULK_ROWS, streams=streams, aggregate_type="Thing"))
    events = assert_gap_free(store)
    assert events.height == total + BULK_ROWS
    for s in streams:
        versions = [e.aggregate_version for e in store.get_events(s, "Thing")]
        assert versions == list(range(1, len(versions) + 1))
    assert maintenance.verify(store).ok
    assert all_events(open_store()).equals(events)


@pytest.mark.parametrize("layout", ["write-ahead log", "segments", "both"])
def test_a_reopened_store_reads_what_an_earlier_instance_wrote(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, layout: str
) -> None:
    stream, flow = uid(1), uid(1, kind=0xC)
    writer = open_store()
    if layout != "write-ahead log":
        writer.append_frame(
            make_frame(BULK_ROWS, streams=[stream], aggregate_type="Thing", correlation_id=flow)
        )
    if layout != "segments":
        writer.append([make_event(stream, correlation_id=flow) for _ in range(3)])
    expected = all_events(writer)
    expected_stream = writer.get_events(stream, "Thing")
    writer.close()

    reader = open_store()
    assert reader.head_position == expected.height
    assert all_events(reader).equals(expected)
    assert reader.get_events(stream, "Thing") == expected_stream
    assert len(reader.get_events_by_correlation_id(flow)) == expected.height
    reader.append([make_event(stream)], expected_versions={stream: expected.height})
    assert reader.head_position == expected.height + 1


def test_events_are_partitioned_by_event_date_and_readable_through_the_published_table(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    days = [utc(2026, 10, 30, 12), utc(2026, 10, 31, 23, 59), utc(2026, 11, 1, 0, 1)]
    store.append([make_event(timestamp=days[0]), make_event(timestamp=days[2])])
    n = BULK_ROWS + 1
    store.append_frame(make_frame(n, timestamps=[days[k % 3] for k in range(n)]))
    store.append([make_event(timestamp=days[1])])
    maintenance.compact(store)  # the write-ahead tail into segments too, and published
    head = store.head_position
    assert head == n + 3

    partitions = sorted(p.name for p in store.segments_dir.iterdir() if p.name.startswith("event_date="))
    assert partitions == ["event_date=2026-10-30", "event_date=2026-10-31", "event_date=2026-11-01"]
    assert all(list(store.segments_dir.joinpath(p).glob("*.parquet")) for p in partitions)

    scanned = (
        pl.scan_delta(store.table_uri)
        .select("global_position", "event_date", "timestamp")
        .collect()
        .sort("global_position")
    )
    assert scanned["global_position"].to_list() == list(range(1, head + 1))
    assert scanned["event_date"].equals(scanned["timestamp"].dt.date(), check_names=False)

    rows = duckdb.execute(
        "SELECT count(*), count(DISTINCT global_position), min(global_position), max(global_position), "
        "count(*) FILTER (WHERE event_date::DATE <> timestamp::DATE) "
        "FROM read_parquet($1::VARCHAR[], hive_partitioning = true)",
        [DeltaTable(store.table_uri).file_uris()],
    ).fetchall()
    assert rows == [(head, head, 1, head, 0)]
    assert maintenance.verify(store).ok


# -- idempotent retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("moved_to_segments", [False, True])
def test_re_appending_the_same_small_batch_returns_the_original_positions(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, moved_to_segments: bool
) -> None:
    store = open_store()
    store.append([make_event()])
    batch = [make_event(uid(1)), make_event(uid(2)), make_event(uid(1))]
    first = store.append(batch)
    if moved_to_segments:
        store.append_frame(make_frame(BULK_ROWS))
    head, files = store.head_position, log_files(store)

    retry = store.append_batch(batch)
    assert retry.positions == first == [2, 3, 4]
    assert retry.duplicate
    assert store.append(list(batch), expected_versions={uid(1): 0, uid(2): 0}) == first
    assert open_store().append(batch) == first  # a new instance knows them too
    assert store.head_position == head
    assert log_files(store) == files
    assert all_events(store)["event_id"].n_unique() == head


@pytest.mark.parametrize("kind", ["frame", "envelopes"])
def test_re_appending_the_same_bulk_batch_returns_the_original_positions(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, kind: str
) -> None:
    store = open_store()
    store.append([make_event()])
    batch: Any = (
        make_frame(BULK_ROWS + 5, streams=[uid(1), uid(2)])
        if kind == "frame"
        else [make_event(uid(k % 3)) for k in range(BULK_ROWS)]
    )
    first = store.append(batch)
    store.append([make_event()])
    head, files = store.head_position, log_files(store)

    retry = store.append_batch(batch)
    assert retry.duplicate and retry.positions == first == list(range(2, 2 + len(first)))
    assert open_store().append(batch) == first
    assert store.head_position == head
    assert log_files(store) == files


def test_an_idempotent_retry_needs_no_fresh_expected_versions(
    store: EventStore, make_event: MakeEvent
) -> None:
    stream = uid(1)
    batch = [make_event(stream), make_event(stream)]
    first = store.append(batch, expected_versions={stream: 0})
    assert store.append(batch, expected_versions={stream: 0}) == first
    assert store.head_position == 2


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"n": -1}},
        {"event_type": "SomethingElse"},
        {"aggregate_id": "0000000a-0000-7000-8000-ffffffffffff"},
        {"event_version": 2},
    ],
)
@pytest.mark.parametrize("moved_to_segments", [False, True])
def test_an_event_id_reused_with_different_content_is_refused(
    store: EventStore,
    make_event: MakeEvent,
    make_frame: MakeFrame,
    change: dict[str, Any],
    moved_to_segments: bool,
) -> None:
    original = make_event(uid(1), event_id=uid(1, kind=0xE), data={"n": 1})
    store.append([original])
    if moved_to_segments:
        store.append_frame(make_frame(BULK_ROWS))
    head, files = store.head_position, log_files(store)
    with pytest.raises(DuplicateEventError) as caught:
        store.append([original.model_copy(update=change)])
    assert original.id in str(caught.value)
    assert store.head_position == head and log_files(store) == files
    (stored,) = store.get_events(uid(1), "Thing")
    assert stored.content_key() == original.content_key()


def test_a_bulk_batch_reusing_an_id_with_different_content_is_refused(
    store: EventStore, make_frame: MakeFrame
) -> None:
    frame = make_frame(BULK_ROWS, streams=[uid(1)])
    store.append_frame(frame)
    head, files = store.head_position, log_files(store)
    changed = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 17)
        .then(pl.lit('{"i":"changed"}'))
        .otherwise(pl.col("data"))
        .alias("data")
    )
    with pytest.raises(DuplicateEventError) as caught:
        store.append_frame(changed)
    assert frame["event_id"][17] in str(caught.value) and "data" in str(caught.value)
    assert store.head_position == head and log_files(store) == files


@pytest.mark.parametrize("path", ["small", "bulk"])
@pytest.mark.parametrize("moved_to_segments", [False, True])
def test_a_batch_mixing_new_and_existing_ids_raises_and_writes_nothing(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame, path: str, moved_to_segments: bool
) -> None:
    existing = [make_event(uid(1)) for _ in range(3)]
    store.append(existing)
    if moved_to_segments:
        store.append_frame(make_frame(BULK_ROWS))
    head, files = store.head_position, log_files(store)
    fresh_count = 1 if path == "small" else BULK_ROWS
    mixed = [*[make_event(uid(2)) for _ in range(fresh_count)], existing[1]]
    with pytest.raises(DuplicateEventError) as caught:
        store.append(mixed)
    assert existing[1].id in str(caught.value)
    assert store.head_position == head
    assert log_files(store) == files
    assert store.get_events(uid(2), "Thing") == []


@pytest.mark.parametrize("size", [2, BULK_ROWS])
def test_an_id_twice_in_one_batch_is_refused(store: EventStore, make_event: MakeEvent, size: int) -> None:
    events = [make_event() for _ in range(size - 1)]
    with pytest.raises(ValidationError, match="twice"):
        store.append([*events, events[0]])
    assert store.head_position == 0


# -- upcasting -------------------------------------------------------------------------------------


def _upcasting_registry() -> EventRegistry:
    registry = EventRegistry()
    registry.add_upcaster("PaymentSeen", 1, lambda d: {**d, "currency": "EUR"})

    @registry.upcaster("PaymentSeen", 2)
    def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        out["amount_minor"] = out.pop("amount") * 100
        return out

    return registry


@pytest.mark.parametrize("layout", ["write-ahead log", "segments"])
def test_old_events_read_back_upcast_while_the_files_keep_them_as_written(
    open_store: OpenStore, make_event: MakeEvent, layout: str
) -> None:
    stream, flow = uid(1), uid(1, kind=0xC)
    writer = open_store()  # a registry that knows no upcasters
    v1 = make_event(stream, "PaymentSeen", data={"amount": 5}, event_version=1, correlation_id=flow)
    v2 = make_event(
        stream, "PaymentSeen", data={"amount": 6, "currency": "USD"}, event_version=2, correlation_id=flow
    )
    raw = make_event(stream, "NoteAdded", data={"text": "hi"}, correlation_id=flow, causation_id=v1.id)
    writer.append([v1, v2, raw])
    if layout == "segments":
        maintenance.compact(writer)
    writer.close()

    reader = open_store(registry=_upcasting_registry())
    events = reader.get_events(stream, "Thing")
    assert [(e.event_type, e.event_version, e.data) for e in events] == [
        ("PaymentSeen", 3, {"amount_minor": 500, "currency": "EUR"}),
        ("PaymentSeen", 3, {"amount_minor": 600, "currency": "USD"}),
        ("NoteAdded", 1, {"text": "hi"}),
    ]
    assert [e.event_version for e in reader.get_events_by_correlation_id(flow)] == [3, 3, 1]
    assert [e.event_version for e in reader.get_causation_chain(v1.id)] == [3, 1]
    assert reader.read().collect()["event_version"].to_list() == [1, 2, 1]  # read() is the raw log

    if layout == "segments":
        on_disk = pl.read_parquet(segment_files(reader), columns=["event_version", "data"])
        assert on_disk["event_version"].to_list() == [1, 2, 1]
        assert json.loads(on_disk["data"][0]) == {"amount": 5}
    assert maintenance.verify(reader).ok


# -- time travel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["write-ahead log", "segments", "both"])
def test_the_log_can_be_read_as_it_stood_at_a_position_or_a_time(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame, layout: str
) -> None:
    stream = uid(1)
    commits: list[list[int]] = []
    for k in range(6):
        if layout == "both" and k == 3:
            commits.append(
                store.append_frame(make_frame(BULK_ROWS, streams=[stream], aggregate_type="Thing"))
            )
        else:
            commits.append(store.append([make_event(stream, data={"k": k}), make_event(uid(2))]))
        time.sleep(0.003)
    if layout == "segments":
        maintenance.compact(store)
    events = all_events(store)
    created = events["created_at"]
    assert created.is_sorted(), "commit times must not decrease with position"
    commit_time = [created[c[0] - 1] for c in commits]
    assert all(created[p - 1] == commit_time[i] for i, c in enumerate(commits) for p in c)

    assert store.position_at(commit_time[0] - timedelta(microseconds=1)) == 0
    for i, c in enumerate(commits):
        assert store.position_at(commit_time[i]) == c[-1]
        assert store.position_at(commit_time[i] + timedelta(microseconds=1)) == c[-1]
        if i:
            assert store.position_at(commit_time[i] - timedelta(microseconds=1)) == commits[i - 1][-1]

    cut = commits[2][-1]
    at_cut = [e.global_position for e in store.get_events(stream, "Thing", as_of_position=cut)]
    assert at_cut == [
        p for p in events.filter(pl.col("aggregate_id") == stream)["global_position"] if p <= cut
    ]
    assert [e.global_position for e in store.get_events(stream, "Thing", as_of=commit_time[2])] == at_cut
    assert store.read(to_position=cut).collect().equals(events.head(cut))
    assert store.read(as_of=commit_time[2]).collect().equals(events.head(cut))
    assert store.read(as_of=commit_time[0] - timedelta(seconds=1)).collect().height == 0
    assert store.read(as_of=commit_time[-1] + timedelta(days=1)).collect().equals(events)
    flow = events["correlation_id"][0]
    assert all(e.global_position <= cut for e in store.get_events_by_correlation_id(flow, as_of_position=cut))  # type: ignore[operator]


def test_commit_times_never_decrease_across_instances_and_reopens(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    first, second = open_store(), open_store()
    for k in range(10):
        (first if k % 2 else second).append([make_event()])
        if k == 5:
            first.append_frame(make_frame(BULK_ROWS))
    assert all_events(open_store())["created_at"].is_sorted()


# -- rejection of bad input before anything is written ---------------------------------------------

BAD_IDS = [
    "../../etc",
    "x'; DROP TABLE events; --",
    "",
    "not-a-uuid",
    "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162\n",
]
ID_COLUMNS = ["aggregate_id", "tenant_id", "correlation_id", "causation_id", "event_id"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    """A store holding two events, so "nothing written" is checked against a non-empty log. Shared by
    the rejection tests: each of them must leave it exactly as it found it."""
    with EventStore.open(tmp_path_factory.mktemp("seeded") / "data", registry=EventRegistry()) as store:
        store.append([build_event(uid(1)), build_event(uid(1))])
        yield store


def _envelope_field_error(exc: BaseException) -> BaseException:
    """The store's error, raised directly or wrapped by pydantic (which wraps ValueErrors only)."""
    if isinstance(exc, pydantic.ValidationError):
        cause = exc.errors()[0].get("ctx", {}).get("error")
        return cause if isinstance(cause, BaseException) else exc
    return exc


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("field", ID_COLUMNS)
def test_an_envelope_with_a_bad_id_is_refused_before_anything_is_written(
    seeded: EventStore, make_event: MakeEvent, field: str, bad: str
) -> None:
    files = log_files(seeded)
    with pytest.raises(Exception) as caught:
        seeded.append([make_event(uid(2)), make_event(**{field: bad})])  # type: ignore[arg-type]
    error = _envelope_field_error(caught.value)
    assert isinstance(error, InvalidIdError), caught.value
    assert error.value == bad
    assert field.removeprefix("event_") in error.field
    assert repr(bad) in str(error)
    assert seeded.head_position == 2 and log_files(seeded) == files


@pytest.mark.parametrize("size", [1, BULK_ROWS])
@pytest.mark.parametrize("field", ["id", "aggregate_id", "tenant_id", "correlation_id", "causation_id"])
def test_an_envelope_that_skipped_validation_is_still_refused(
    seeded: EventStore, make_event: MakeEvent, field: str, size: int
) -> None:
    files = log_files(seeded)
    good = make_event(uid(3))
    if field in ("id", "aggregate_id"):
        bad = good.model_copy(update={field: "../../etc"})
    else:
        bad = good.model_copy(update={"metadata": good.metadata.model_copy(update={field: "../../etc"})})
    batch = [make_event(uid(3)) for _ in range(size - 1)] + [bad]
    with pytest.raises(InvalidIdError) as caught:
        seeded.append(batch)
    assert caught.value.value == "../../etc" and field in caught.value.field
    assert seeded.head_position == 2 and log_files(seeded) == files


@pytest.mark.parametrize(
    ("bad", "size"), [(bad, 3) for bad in BAD_IDS] + [(bad, BULK_ROWS + 1) for bad in BAD_IDS[:2]]
)
@pytest.mark.parametrize("column", ID_COLUMNS)
def test_a_columnar_batch_with_a_bad_id_is_refused_naming_the_column_and_first_bad_value(
    seeded: EventStore, make_frame: MakeFrame, column: str, bad: str, size: int
) -> None:
    files = log_files(seeded)
    frame = make_frame(size, streams=[uid(5)])
    if column == "causation_id":
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("causation_id"))
    values = frame[column].to_list()
    values[1], values[2] = bad, "second-bad-value"
    frame = frame.with_columns(pl.Series(column, values, dtype=pl.String))
    with pytest.raises(InvalidIdError) as caught:
        seeded.append_frame(frame)
    assert caught.value.value == bad
    assert column in caught.value.field and column in str(caught.value)
    assert repr(bad) in str(caught.value)
    assert seeded.head_position == 2 and log_files(seeded) == files


@pytest.mark.parametrize("column", ["aggregate_type", "event_type"])
@pytest.mark.parametrize("bad", ["x'; DROP TABLE events; --", "../../etc", "", "Thing\n"])
def test_a_columnar_batch_with_a_bad_type_name_is_refused(
    seeded: EventStore, make_frame: MakeFrame, column: str, bad: str
) -> None:
    files = log_files(seeded)
    frame = make_frame(3).with_columns(pl.lit(bad).alias(column))
    with pytest.raises(ValidationError) as caught:
        seeded.append_frame(frame)
    assert column in str(caught.value) and repr(bad) in str(caught.value)
    assert seeded.head_position == 2 and log_files(seeded) == files


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: f.drop("tenant_id"), id="missing column"),
        pytest.param(lambda f: f.with_columns(pl.lit(1).alias("surprise")), id="unknown column"),
        pytest.param(lambda f: f.with_columns(pl.lit(None, dtype=pl.String).alias("data")), id="null data"),
        pytest.param(lambda f: f.with_columns(pl.lit(0).alias("event_version")), id="version 0"),
        pytest.param(lambda f: f.with_columns(pl.lit("soon").alias("timestamp")), id="text timestamp"),
    ],
)
def test_a_malformed_columnar_batch_is_refused(
    seeded: EventStore, make_frame: MakeFrame, change: Callable[[pl.DataFrame], pl.DataFrame]
) -> None:
    files = log_files(seeded)
    with pytest.raises(ValidationError):
        seeded.append_frame(change(make_frame(3)))
    assert seeded.head_position == 2 and log_files(seeded) == files


def test_a_columnar_batch_with_naive_timestamps_is_refused(seeded: EventStore, make_frame: MakeFrame) -> None:
    files = log_files(seeded)
    frame = make_frame(3).with_columns(pl.lit(datetime(2026, 11, 1, 12)).alias("timestamp"))
    with pytest.raises(ValidationError, match="time zone"):
        seeded.append_frame(frame)
    assert seeded.head_position == 2 and log_files(seeded) == files


def test_an_envelope_with_a_naive_timestamp_cannot_be_built(make_event: MakeEvent) -> None:
    with pytest.raises((ValidationError, pydantic.ValidationError), match="time zone"):
        make_event(timestamp=datetime(2026, 11, 1, 12))


@pytest.mark.parametrize("bad", ["../../etc", "x'; DROP TABLE events; --"])
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s, bad: s.get_events(bad, "Thing"), id="get_events"),
        pytest.param(lambda s, bad: s.get_events_by_correlation_id(bad), id="by_correlation"),
        pytest.param(lambda s, bad: s.get_causation_chain(bad), id="causation_chain"),
        pytest.param(lambda s, bad: s.read(tenant_id=bad), id="read_tenant"),
        pytest.param(lambda s, bad: s.get_latest_snapshot(bad, "Thing"), id="latest_snapshot"),
        pytest.param(
            lambda s, bad: s.save_snapshot(bad, "Thing", 1, {}, schema_version=1), id="save_snapshot"
        ),
        pytest.param(lambda s, bad: s.append([], expected_versions={bad: 0}), id="expected_versions"),
    ],
)
def test_queries_refuse_bad_ids(seeded: EventStore, call: Callable[[EventStore, str], Any], bad: str) -> None:
    files = log_files(seeded)
    with pytest.raises(InvalidIdError) as caught:
        call(seeded, bad)
    assert caught.value.value == bad
    assert seeded.head_position == 2 and log_files(seeded) == files


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s, t: s.position_at(t), id="position_at"),
        pytest.param(lambda s, t: s.read(as_of=t), id="read"),
        pytest.param(lambda s, t: s.get_events(uid(1), "Thing", as_of=t), id="get_events"),
    ],
)
def test_time_travel_refuses_naive_datetimes(
    seeded: EventStore, call: Callable[[EventStore, Any], Any]
) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        call(seeded, datetime(2026, 11, 1, 12))


def test_a_non_event_in_an_envelope_batch_is_refused(seeded: EventStore, make_event: MakeEvent) -> None:
    with pytest.raises(ValidationError):
        seeded.append([make_event(), {"aggregate_id": uid(1)}])  # type: ignore[list-item]
    assert seeded.head_position == 2
