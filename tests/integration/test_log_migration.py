"""A data directory written when ``manifest.json`` was the log's commit point keeps opening: readers read
it as it is, and the first writer moves the commit point into the Delta log with one commit carrying the
manifest's state, keeping the former file in quarantine (never read again)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

from settler_pipeline.store import maintenance, table
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from settler_pipeline.store.manifest import Manifest
from tests.factories import MakeEvent, MakeFrame, bulk_batches_to_segments, uid
from tests.integration.test_log_damage import contents

OpenStore = Callable[..., EventStore]
STREAMS = [uid(1), uid(2)]


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def old_layout(store: EventStore, *, published_segments: int) -> Manifest:
    """Turn ``store``'s directory into the former layout: the state in ``manifest.json`` (format 1, with
    its ``published_head``) and a Delta table published by commits that carry only the head position,
    up to its first ``published_segments`` segments (none: no table at all)."""
    state = store.current_view().manifest
    shutil.rmtree(store.segments_dir / table.LOG_FOLDER)
    published = state.segments[:published_segments]
    head = published[-1].last_position if published else 0
    body = json.loads(state.to_json())
    body["published_head"] = head
    store.manifest_path.write_text(json.dumps(body))
    if published:
        adds = []
        for seg in published:
            st = (store.segments_dir / seg.path).stat()
            stats = {"numRecords": seg.rows, "minValues": {"global_position": seg.first_position}}
            adds.append(
                AddAction(
                    seg.path,
                    st.st_size,
                    {"event_date": seg.event_date},
                    int(st.st_mtime * 1000),
                    True,
                    json.dumps(stats),
                )
            )
        create_table_with_add_actions(
            store.table_uri,
            DeltaSchema.from_arrow(table.TABLE_SCHEMA),
            adds,
            mode="error",
            partition_by=[table.PARTITION],
            commit_properties=CommitProperties(custom_metadata={table.HEAD_KEY: head}),
        )
    return state


@pytest.mark.parametrize("published_segments", [0, 1])
def test_a_directory_of_the_manifest_layout_is_read_as_is_and_migrated_by_the_first_writer(
    open_store: OpenStore,
    data_dir: Path,
    make_event: MakeEvent,
    make_frame: MakeFrame,
    published_segments: int,
) -> None:
    writer = open_store()
    for _ in range(2):
        writer.append_frame(make_frame(BULK_ROWS, streams=STREAMS, aggregate_type="Thing"))
        writer.append([make_event(STREAMS[0]) for _ in range(3)])  # a write-ahead tail
    expected = writer.read().collect()
    head = expected.height
    writer.close()
    state = old_layout(writer, published_segments=published_segments)
    assert len(state.segments) == 2 and state.segments_head < head
    before = contents(data_dir)

    with open_store(read_only=True) as reader:
        assert reader.read().collect().equals(expected)
        assert reader.head_position == head
    assert contents(data_dir) == before, "a reader writes nothing, not even the migration"

    migrated = open_store()
    transaction_log = migrated.segments_dir / table.LOG_FOLDER
    newest = table.newest_version(migrated.segments_dir)
    # a table published before Settler set its table properties first gets them, in a commit of its
    # own that repeats the previous commit's metadata; then one commit carries the former state
    assert newest == (2 if published_segments else 0), "one Delta commit carries the former state"
    configuration = DeltaTable(migrated.table_uri).metadata().configuration
    assert configuration["delta.deletedFileRetentionDuration"] == table.TOMBSTONE_RETENTION
    committed = table.read_state(migrated.segments_dir, newest)
    assert committed is not None
    assert committed.segments == state.segments and committed.segments_head == state.segments_head
    assert committed.wal_first_position == state.wal_first_position
    assert committed.max_event_id == state.max_event_id and committed.generation == state.generation + 1
    assert not migrated.manifest_path.exists(), "the former commit point is never trusted again"
    kept = list((migrated.root / "quarantine").rglob("manifest.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["segments_head"] == state.segments_head
    assert table.current_files(migrated.segments_dir) == {s.path for s in state.segments}
    assert transaction_log.is_dir()
    assert migrated.read().collect().equals(expected)
    assert maintenance.verify(migrated).ok

    # An older manifest.json put back after the migration is never read: the Delta log is the truth.
    shutil.copy2(kept[0], migrated.manifest_path)
    assert migrated.append([make_event(STREAMS[1])]) == [head + 1]
    again = open_store()
    assert again.head_position == head + 1
    assert not again.manifest_path.exists()
    assert again.publish() == head + 1
    table_rows = pl.scan_delta(again.table_uri).select("global_position").collect()
    assert table_rows["global_position"].sort().to_list() == list(range(1, head + 2))
    assert DeltaTable(again.table_uri).version() == newest + 1
    assert maintenance.verify(open_store(read_only=True)).ok


def test_a_damaged_directory_of_the_manifest_layout_is_left_as_found(
    open_store: OpenStore, data_dir: Path, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    writer = open_store()
    writer.append_frame(make_frame(BULK_ROWS, streams=STREAMS, aggregate_type="Thing"))
    writer.append([make_event(STREAMS[0])])
    writer.close()
    old_layout(writer, published_segments=0)
    os.truncate(next(writer.wal_dir.iterdir()), 0)  # the acknowledged tail is gone: the log is damaged
    before = contents(data_dir)
    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok and any(f"{BULK_ROWS + 1}..{BULK_ROWS + 1}" in p for p in report.problems)
    open_store()
    assert contents(data_dir) == before, "no migration of a damaged log, nothing moved"
