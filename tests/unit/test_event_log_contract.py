"""The event-log port's contract, held against every implementation: the Parquet/DuckDB store on a
temporary directory and the in-memory log the fast handler tests use.

The on-disk store has many more tests of its own (crash safety, segments, the index, several
processes); this suite pins down only what the application relies on, so both logs stay
interchangeable behind :class:`~settler_pipeline.application.ports.EventLog`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.errors import ConcurrencyError, DuplicateEventError, InvalidIdError, ValidationError
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.memory import InMemoryEventLog
from tests.factories import OTHER_TENANT, MakeEvent, MakeFrame, build_event, uid

KINDS = ("memory", "parquet")


def _open(kind: str, path: Path, registry: EventRegistry) -> EventLog:
    if kind == "memory":
        return InMemoryEventLog(registry=registry)
    return EventStore.open(path, registry=registry)


@pytest.fixture(params=KINDS)
def log(request: pytest.FixtureRequest, tmp_path: Path, registry: EventRegistry) -> Iterator[EventLog]:
    opened = _open(request.param, tmp_path / "data", registry)
    yield opened
    close = getattr(opened, "close", None)
    if close is not None:
        close()


def test_positions_are_gap_free_and_versions_count_per_stream(log: EventLog, make_event: MakeEvent) -> None:
    a, b = uid(1), uid(2)
    first = log.append([make_event(a), make_event(b), make_event(a)])
    second = log.append([make_event(b)])
    assert first + second == [1, 2, 3, 4]
    assert log.head_position == 4
    assert [e.aggregate_version for e in log.get_events(a, "Thing")] == [1, 2]
    assert [e.aggregate_version for e in log.get_events(b, "Thing")] == [1, 2]


def test_a_wrong_expected_version_writes_nothing(log: EventLog, make_event: MakeEvent) -> None:
    stream = uid(1)
    log.append([make_event(stream)], expected_versions={stream: 0})
    with pytest.raises(ConcurrencyError, match="expected version 0, actual version 1"):
        log.append([make_event(stream), make_event(uid(2))], expected_versions={stream: 0})
    assert log.head_position == 1
    assert log.get_events(uid(2), "Thing") == []


def test_a_retried_batch_returns_its_first_positions_and_appends_nothing(
    log: EventLog, make_event: MakeEvent
) -> None:
    batch = [make_event(uid(1), event_id=uid(10, 9)), make_event(uid(1), event_id=uid(11, 9))]
    assert log.append(batch) == [1, 2]
    assert log.append(batch, expected_versions={uid(1): 0}) == [1, 2]
    assert log.head_position == 2


def test_an_id_reused_for_other_content_or_half_a_batch_is_refused(
    log: EventLog, make_event: MakeEvent
) -> None:
    log.append([make_event(uid(1), event_id=uid(10, 9), data={"n": 1})])
    with pytest.raises(DuplicateEventError, match="different data"):
        log.append([make_event(uid(1), event_id=uid(10, 9), data={"n": 2})])
    with pytest.raises(DuplicateEventError, match="other events of the batch are not"):
        log.append([make_event(uid(1), event_id=uid(10, 9), data={"n": 1}), make_event(uid(1))])
    assert log.head_position == 1


def test_an_id_twice_in_one_batch_is_refused(log: EventLog, make_event: MakeEvent) -> None:
    with pytest.raises(ValidationError, match="twice"):
        log.append([make_event(uid(1), event_id=uid(5, 9)), make_event(uid(2), event_id=uid(5, 9))])
    assert log.head_position == 0


def test_a_columnar_batch_is_stored_like_envelopes(log: EventLog, make_frame: MakeFrame) -> None:
    streams = [uid(1), uid(2)]
    assert log.append_frame(make_frame(5, streams=streams)) == [1, 2, 3, 4, 5]
    events = log.get_events(uid(1), "Record")
    assert [e.aggregate_version for e in events] == [1, 2, 3]
    assert [e.data["i"] for e in events] == [0, 2, 4]


def test_reads_filter_by_range_type_tenant_and_flow(log: EventLog, make_event: MakeEvent) -> None:
    flow = uid(7, 3)
    log.append([make_event(uid(1), "A", correlation_id=flow), make_event(uid(2), "B")])
    log.append([make_event(uid(1), "B", tenant_id=OTHER_TENANT, correlation_id=flow)])
    everything = log.read().collect()
    assert everything["global_position"].to_list() == [1, 2, 3]
    assert log.read(from_position=1, to_position=2).collect()["global_position"].to_list() == [2]
    assert log.read(event_types=["B"]).collect()["global_position"].to_list() == [2, 3]
    assert log.read(tenant_id=OTHER_TENANT).collect()["global_position"].to_list() == [3]
    assert log.correlation_frame(flow)["global_position"].to_list() == [1, 3]
    event = log.get_event(str(everything["event_id"][1]))
    assert event is not None and event.event_type == "B"
    assert log.get_event(uid(99, 9)) is None


def test_the_log_reads_as_it_stood_at_a_position_or_a_time(log: EventLog, make_event: MakeEvent) -> None:
    stream = uid(1)
    log.append([make_event(stream)])
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    log.append([make_event(stream), make_event(stream)])
    assert log.position_at(between) == 1
    assert len(log.get_events(stream, "Thing", as_of=between)) == 1
    assert len(log.get_events(stream, "Thing", as_of_position=2)) == 2
    assert log.stream_frame(stream, "Thing", as_of_position=1).height == 1
    assert log.position_at(datetime(2000, 1, 1, tzinfo=UTC)) == 0


def test_old_event_versions_read_back_upcast(
    log: EventLog, make_event: MakeEvent, registry: EventRegistry
) -> None:
    registry.register("Renamed", current_version=2)
    registry.add_upcaster("Renamed", 1, lambda data: {"name": data["old_name"]})
    stream = uid(1)
    log.append([make_event(stream, "Renamed", data={"old_name": "x"}, event_version=1)])
    (event,) = log.get_events(stream, "Thing")
    assert (event.event_version, event.data) == (2, {"name": "x"})
    frame = log.stream_frame(stream, "Thing")
    assert frame["event_version"].to_list() == [2]
    assert json.loads(frame["data"][0]) == {"name": "x"}


def test_the_newest_snapshot_of_the_asked_schema_wins(log: EventLog) -> None:
    stream = uid(1)
    assert log.get_latest_snapshot(stream, "Thing") is None
    log.save_snapshot(stream, "Thing", 3, {"n": 3}, schema_version=1, global_position=3)
    log.save_snapshot(stream, "Thing", 5, {"n": 5}, schema_version=1, global_position=9)
    log.save_snapshot(stream, "Thing", 4, {"n": 4}, schema_version=2, global_position=6)
    newest = log.get_latest_snapshot(stream, "Thing", schema_version=1)
    assert newest is not None and (newest.aggregate_version, newest.state) == (5, {"n": 5})
    older_schema = log.get_latest_snapshot(stream, "Thing", schema_version=2)
    assert older_schema is not None and older_schema.global_position == 6


@pytest.mark.parametrize("bad", ["../etc", "1' OR '1'='1", "not-a-uuid"])
def test_bad_ids_are_refused_before_any_read(log: EventLog, bad: str) -> None:
    with pytest.raises(InvalidIdError):
        log.get_events(bad, "Thing")
    with pytest.raises(InvalidIdError):
        log.correlation_frame(bad)
    with pytest.raises(InvalidIdError):
        log.get_event(bad)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=6))
def test_any_sequence_of_batches_gives_gap_free_positions_and_dense_versions(
    kind: str, batches: list[list[int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    opened = _open(kind, tmp_path_factory.mktemp("log") / "data", EventRegistry())
    try:
        for batch in batches:
            opened.append([build_event(uid(s)) for s in batch])
        frame = opened.read().collect()
        assert frame["global_position"].to_list() == list(range(1, sum(map(len, batches)) + 1))
        for stream in {s for batch in batches for s in batch}:
            versions = [e.aggregate_version for e in opened.get_events(uid(stream), "Thing")]
            assert versions == list(range(1, len(versions) + 1))
    finally:
        close = getattr(opened, "close", None)
        if close is not None:
            close()
