"""Exact indexes: an idempotency check by event id is a lookup whatever the id's kind, never a scan."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import duckdb
import pytest

from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from settler_pipeline.store.segment_reader import SegmentReader
from tests.factories import MakeEvent, MakeFrame, uid

OpenStore = Callable[..., EventStore]
NAMESPACE = uuid.UUID(int=0x5E771E2)


def named_id(key: str) -> str:
    """A name-based id, as commands with an idempotency key make (UUIDv5: random-looking)."""
    return str(uuid.uuid5(NAMESPACE, key))


@pytest.fixture
def groups_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many row groups each read decoded (every segment read goes through SegmentReader)."""
    counts: list[int] = []
    original = SegmentReader.read_table

    def counting(self: SegmentReader, relative: str, groups: list[int], columns: Any = None) -> Any:
        counts.append(len(groups))
        return original(self, relative, groups, columns)

    monkeypatch.setattr(SegmentReader, "read_table", counting)
    return counts


def build(store: EventStore, make_event: MakeEvent, make_frame: MakeFrame) -> list[str]:
    """Segments whose row groups each span nearly the whole id space (name-based ids in bulk, as a
    log of many idempotent commands flushed from the tail has), with one-event commands between them."""
    keys = []
    for k in range(6):
        ids = [named_id(f"bulk-{k}-{j}") for j in range(BULK_ROWS)]
        store.append_frame(
            make_frame(BULK_ROWS, streams=[uid(k + 10)], aggregate_type="Thing", event_ids=ids)
        )
        key = f"command-{k}"
        store.append([make_event(uid(1), event_id=named_id(key))])
        keys.append(key)
    store.publish()  # the one-event commands now live in segments, not in the tail
    assert store.current_view().tail.rows == 0
    return keys


def test_a_retried_named_id_is_found_by_an_exact_lookup(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame, groups_read: list[int]
) -> None:
    keys = build(store, make_event, make_frame)
    original = store.get_event(named_id(keys[2]))
    assert original is not None
    position = store.event_position(original.id)
    groups_read.clear()
    retry = store.append_batch([original])
    assert retry.duplicate and retry.positions == [position]
    assert groups_read == [1], f"a retry decoded {groups_read} row groups (there are 7 or more)"
    groups_read.clear()
    fresh = store.append_batch([make_event(uid(1), event_id=named_id("a new command"))])
    assert not fresh.duplicate
    assert groups_read == [], "a new name-based id reads no event at all"


def test_lookups_by_named_id_work_in_a_fresh_process_and_after_compaction(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    from settler_pipeline.store import maintenance

    keys = build(open_store(), make_event, make_frame)
    maintenance.compact(open_store())
    reader = open_store(read_only=True)
    for key in keys:
        event = reader.get_event(named_id(key))
        assert event is not None and event.id == named_id(key)
    assert reader.get_event(named_id("never sent")) is None
    writer = open_store()
    assert writer.append_batch([reader.get_event(named_id(keys[0]))]).duplicate  # type: ignore[list-item]


def test_an_index_written_before_named_ids_is_completed_on_open(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, groups_read: list[int]
) -> None:
    first = open_store()
    keys = build(first, make_event, make_frame)
    first.close()
    con = duckdb.connect(str(first.index.path))
    con.execute("DROP TABLE named_ids")
    con.close()
    reopened = open_store()
    original = reopened.get_event(named_id(keys[4]))
    assert original is not None
    groups_read.clear()
    assert reopened.append_batch([original]).duplicate
    assert groups_read == [1]
