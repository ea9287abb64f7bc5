"""Interleaved work: columnar batches of a few events per stream commit to the write-ahead tail, the
tail is flushed into segments with stream copies, and loading a stream reads its copy's row groups."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settler_pipeline.errors import CorruptionError
from settler_pipeline.store import limits, maintenance
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.segment_reader import SegmentReader
from tests.factories import MakeFrame, build_frame, uid

OpenStore = Callable[..., EventStore]
STREAMS = [uid(k) for k in range(1, 41)]
PER_BATCH = 5  # events per stream per batch, as a job appending to existing streams writes them


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tail flushes after 1,000 events and batches of 5,000 go straight to segments."""
    monkeypatch.setattr(limits, "WAL_FLUSH_ROWS", 1_000)
    monkeypatch.setattr(limits, "SEGMENT_ROWS", 5_000)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(folder, row groups) of every row-group read, segments and stream copies alike."""
    seen: list[tuple[str, int]] = []
    original = SegmentReader.read_table

    def counting(self: SegmentReader, relative: str, groups: list[int], columns: Any = None) -> Any:
        seen.append((Path(self._dir).name, len(groups)))
        return original(self, relative, groups, columns)

    monkeypatch.setattr(SegmentReader, "read_table", counting)
    return seen


def interleaved(store: EventStore, make_frame: MakeFrame, batches: int) -> None:
    for b in range(batches):
        n = len(STREAMS) * PER_BATCH
        store.append_frame(make_frame(n, streams=STREAMS, aggregate_type="Thing", first=b * n))


def as_stored(store: EventStore, stream: str) -> list[tuple[int, int, str]]:
    """(version, position, data) of one stream as the full read has it."""
    rows = store.read().collect().filter(pl.col("aggregate_id") == stream).sort("aggregate_version")
    return list(rows.select("aggregate_version", "global_position", "data").iter_rows())


def loaded(store: EventStore, stream: str) -> list[tuple[int, int, str]]:
    events = store.get_events(stream, "Thing")
    frame = store.stream_frame(stream, "Thing")
    assert [e.aggregate_version for e in events] == frame["aggregate_version"].to_list()
    return [
        (e.aggregate_version, e.global_position or 0, d) for e, d in zip(events, frame["data"], strict=True)
    ]


@pytest.mark.usefixtures("small_limits")
def test_small_columnar_batches_commit_to_the_tail_and_a_flush_writes_stream_copies(
    store: EventStore, make_frame: MakeFrame, reads: list[tuple[str, int]]
) -> None:
    interleaved(store, make_frame, 4)  # 800 events: all in the write-ahead tail
    assert store.current_view().tail.rows == 800
    assert not list(store.segments_dir.rglob("*.parquet"))
    interleaved(store, make_frame, 1)  # reaches 1,000: tail and batch go into a segment with its copy
    assert store.current_view().tail.rows == 0
    assert len(list(store.copies_dir.rglob("*.parquet"))) == 1
    reads.clear()
    stream = STREAMS[7]
    assert [v for v, _, _ in loaded(store, stream)] == list(range(1, 5 * PER_BATCH + 1))
    # the stream's 25 events of five commits come from one row group of its copy, not five of the segment
    assert reads and all(folder == "streams" and groups == 1 for folder, groups in reads)
    assert loaded(store, stream) == as_stored(store, stream)


@pytest.mark.usefixtures("small_limits")
def test_a_retried_tail_batch_returns_its_positions_and_a_changed_one_is_refused(
    store: EventStore, make_frame: MakeFrame
) -> None:
    batch = make_frame(200, streams=STREAMS, aggregate_type="Thing")
    first = store.append_frame(batch)
    store.append_frame(make_frame(200, streams=STREAMS, aggregate_type="Thing"))
    assert store.append_frame(batch) == first
    assert store.head_position == 400
    with pytest.raises(Exception, match="different data"):
        store.append_frame(batch.with_columns(pl.lit('{"i": -1}').alias("data")))


@pytest.mark.usefixtures("small_limits")
def test_a_damaged_stream_copy_fails_the_load_naming_the_file(
    store: EventStore, make_frame: MakeFrame, open_store: OpenStore
) -> None:
    interleaved(store, make_frame, 5)
    (copy,) = store.copies_dir.rglob("*.parquet")
    store.close()
    blob = bytearray(copy.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    copy.write_bytes(bytes(blob))
    reader = open_store(read_only=True)
    with pytest.raises(CorruptionError, match=copy.name) as caught:
        reader.get_events(STREAMS[0], "Thing")
    assert "reindex" in (caught.value.hint or "")
    report = maintenance.verify(reader)
    assert not report.ok and any(copy.name in p and "reindex" in p for p in report.problems)
    writer = open_store()
    maintenance.reindex(writer)
    assert [e.aggregate_version for e in writer.get_events(STREAMS[0], "Thing")] == list(range(1, 26))
    assert maintenance.verify(writer).ok


@pytest.mark.usefixtures("small_limits")
def test_compaction_rewrites_copies_and_reindex_falls_back_to_segments(
    store: EventStore, make_frame: MakeFrame, data_dir: Path
) -> None:
    interleaved(store, make_frame, 15)  # three flushes: three segments, three copies
    before = {s: as_stored(store, s) for s in STREAMS[:3]}
    old_copies = sorted(store.copies_dir.rglob("*.parquet"))
    assert len(old_copies) == 3
    report = maintenance.compact(store)
    assert report.segments_after == 1
    new_copies = sorted(store.copies_dir.rglob("*.parquet"))
    assert len(new_copies) == 1 and new_copies[0] not in old_copies
    assert all((store.retired_dir / "streams" / c.relative_to(store.copies_dir)).exists() for c in old_copies)
    assert {s: loaded(store, s) for s in STREAMS[:3]} == before
    maintenance.reindex(store)
    assert not list(store.copies_dir.rglob("*.parquet"))  # retired: loads read the segments themselves
    assert {s: loaded(store, s) for s in STREAMS[:3]} == before
    assert maintenance.verify(store).ok


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=8))
def test_any_mix_of_batch_sizes_loads_every_stream_as_the_full_read_has_it(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, sizes: list[int]
) -> None:
    monkeypatch.setattr(limits, "WAL_FLUSH_ROWS", 600)
    monkeypatch.setattr(limits, "SEGMENT_ROWS", 500)
    with EventStore.open(tmp_path_factory.mktemp("log")) as store:
        for k, n in enumerate(sizes):
            store.append_frame(
                build_frame(n, streams=STREAMS[: 3 + k], aggregate_type="Thing", first=k * 1000)
            )
        for stream in STREAMS[:4]:
            assert loaded(store, stream) == as_stored(store, stream)


@pytest.mark.usefixtures("small_limits")
def test_a_bulk_batch_behind_a_short_tail_writes_segments_without_stream_copies(
    store: EventStore, make_frame: MakeFrame, reads: list[tuple[str, int]]
) -> None:
    interleaved(store, make_frame, 1)  # 200 events in the write-ahead tail, far under one row group
    store.append_frame(make_frame(5_000, streams=STREAMS, aggregate_type="Thing", first=200))
    assert store.current_view().tail.rows == 0
    assert list(store.segments_dir.rglob("*.parquet"))
    assert not list(store.copies_dir.rglob("*.parquet"))  # the batch is not copied a second time
    reads.clear()
    stream = STREAMS[3]
    assert loaded(store, stream) == as_stored(store, stream)
    assert reads and all(folder == "segments" for folder, _ in reads)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=400), st.integers(min_value=1, max_value=6), st.booleans()
        ),
        min_size=1,
        max_size=8,
    )
)
def test_interleaved_batches_load_back_as_appended_in_this_process_and_after_reopening(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    batches: list[tuple[int, int, bool]],
) -> None:
    """Whatever the mix of columnar and envelope batches, tail commits and flushes: every stream
    loads exactly the payloads appended to it, in append order, from the writer's own tail (frames
    kept beside the write-ahead records) and from a fresh process's view of the files."""
    from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata

    monkeypatch.setattr(limits, "WAL_FLUSH_ROWS", 700)
    monkeypatch.setattr(limits, "SEGMENT_ROWS", 350)
    monkeypatch.setattr(limits, "BULK_ROWS", 50)
    expected: dict[str, list[int]] = {s: [] for s in STREAMS[:6]}
    path = tmp_path_factory.mktemp("log")
    with EventStore.open(path) as store:
        for k, (n, streams, as_envelopes) in enumerate(batches):
            frame = build_frame(n, streams=STREAMS[:streams], aggregate_type="Thing", first=k * 1000)
            for stream, data in frame.select("aggregate_id", "data").iter_rows():
                expected[stream].append(json.loads(data)["i"])
            if as_envelopes:
                store.append(
                    [
                        EventEnvelope(
                            aggregate_id=row["aggregate_id"],
                            aggregate_type="Thing",
                            event_type=row["event_type"],
                            data=json.loads(row["data"]),
                            metadata=EventMetadata(
                                tenant_id=row["tenant_id"], correlation_id=row["correlation_id"]
                            ),
                        )
                        for row in frame.iter_rows(named=True)
                    ]
                )
            else:
                store.append_frame(frame)
        for stream, values in expected.items():
            events = store.get_events(stream, "Thing")
            assert [e.data["i"] for e in events] == values
            assert [e.aggregate_version for e in events] == list(range(1, len(values) + 1))
    with EventStore.open(path, read_only=True) as fresh:
        for stream, values in expected.items():
            assert [e.data["i"] for e in fresh.get_events(stream, "Thing")] == values
            assert (
                fresh.stream_frame(stream, "Thing")["data"]
                .map_elements(lambda d: json.loads(d)["i"], return_dtype=pl.Int64)
                .to_list()
                == values
            )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=6),
    kinds=st.lists(st.sampled_from(["Thing", "Other"]), min_size=6, max_size=6),
    low=st.integers(min_value=1, max_value=60),
    span=st.integers(min_value=0, max_value=80),
    days=st.booleans(),
)
def test_a_version_range_loads_as_the_full_read_has_it_whatever_the_copy_layout(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    sizes: list[int],
    kinds: list[str],
    low: int,
    span: int,
    days: bool,
) -> None:
    """Loads slice a stream's run out of its copy's sorted row groups: whether the run spans two row
    groups, shares an id with a stream of another aggregate type, sits in segments of several event
    dates (interleaved position ranges) or partly in the tail, a load of versions ``low..low+span``
    returns exactly the full read's rows, in version order."""
    from datetime import UTC, datetime, timedelta

    from settler_pipeline.store import stream_copies

    monkeypatch.setattr(limits, "WAL_FLUSH_ROWS", 400)
    monkeypatch.setattr(limits, "SEGMENT_ROWS", 5_000)
    monkeypatch.setattr(stream_copies, "ROW_GROUP_SIZE", 16)  # runs straddle row groups
    with EventStore.open(tmp_path_factory.mktemp("log")) as store:
        for k, n in enumerate(sizes):
            start = datetime(2026, 11, 1, tzinfo=UTC)
            times = [start + timedelta(days=(j % 2) if days else 0) for j in range(n)]
            store.append_frame(
                build_frame(n, streams=STREAMS[:3], aggregate_type=kinds[k], first=k * 1000, timestamps=times)
            )
        full = store.read().collect()
        for stream in STREAMS[:3]:
            for kind in ("Thing", "Other"):
                want = full.filter(
                    (pl.col("aggregate_id") == stream)
                    & (pl.col("aggregate_type") == kind)
                    & pl.col("aggregate_version").is_between(low, low + span)
                ).sort("aggregate_version")
                got = store.get_events(stream, kind, low, low + span)
                assert [(e.aggregate_version, e.global_position, e.data) for e in got] == [
                    (v, p, json.loads(d))
                    for v, p, d in want.select("aggregate_version", "global_position", "data").iter_rows()
                ]
                rows = store.stream_frame(stream, kind, low).filter(pl.col("aggregate_version") <= low + span)
                assert rows["global_position"].to_list() == want["global_position"].to_list()


@pytest.mark.usefixtures("small_limits")
def test_a_missing_stream_copy_fails_the_load_naming_it_instead_of_retrying(
    store: EventStore, make_frame: MakeFrame, open_store: OpenStore
) -> None:
    interleaved(store, make_frame, 5)
    (copy,) = store.copies_dir.rglob("*.parquet")
    store.close()
    copy.unlink()
    reader = open_store(read_only=True)
    with pytest.raises(CorruptionError, match=f"{copy.name} is missing \\(a stream copy") as raised:
        reader.get_events(STREAMS[0], "Thing")
    assert "reindex" in str(raised.value)
    writer = open_store()
    repaired = maintenance.repair(writer)  # what verify's hint says; copies are derived
    assert repaired.ok and any("stream copies" in a for a in repaired.actions), repaired.actions
    assert [e.aggregate_version for e in writer.get_events(STREAMS[0], "Thing")] == list(range(1, 26))


@pytest.mark.usefixtures("small_limits")
def test_stream_copies_of_a_flush_killed_before_its_commit_go_to_quarantine_with_its_segment(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_store()
    interleaved(writer, make_frame, 5)  # a flush: a committed segment and its copy
    interleaved(writer, make_frame, 2)  # in the tail

    class Stop(Exception):
        pass

    def stop(*_: object) -> int:
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(delta_table, "commit", stop)  # the process stops before the Delta commit
        with pytest.raises(Stop):
            writer.publish()
    orphans = sorted(p.name for p in writer.copies_dir.rglob("*.parquet"))
    assert len(orphans) == 2, "the committed segment's copy and the interrupted flush's"

    report = maintenance.verify(open_store(read_only=True))
    assert sum("streams/" in p and "not part of the log" in p for p in report.problems) == 1, report.problems
    reopened = open_store()
    kept = [p.name for p in reopened.copies_dir.rglob("*.parquet")]
    assert len(kept) == 1 and kept[0] in orphans
    moved = [p.name for p in (data_dir / "log" / "quarantine").rglob("streams/**/*.parquet")]
    assert moved == sorted(set(orphans) - set(kept))
    assert reopened.head_position == 7 * len(STREAMS) * PER_BATCH
    assert loaded(reopened, STREAMS[3]) == as_stored(reopened, STREAMS[3])
    assert maintenance.verify(open_store(read_only=True)).ok


@pytest.mark.usefixtures("small_limits")
def test_a_writer_applies_the_index_schema_again_to_a_new_index_file(
    store: EventStore, make_frame: MakeFrame
) -> None:
    """The writer applies the index schema once per index file, not once per process: when the file
    is replaced (reindex) or deleted, its next flush still records its segment and copy."""
    interleaved(store, make_frame, 5)  # a flush: the writer has applied the schema to this file
    maintenance.reindex(store)
    interleaved(store, make_frame, 5)  # a flush into the rebuilt file
    assert loaded(store, STREAMS[3]) == as_stored(store, STREAMS[3])
    assert len(loaded(store, STREAMS[3])) == 10 * PER_BATCH
    for path in (store.index.path, store.index.path.with_name(store.index.path.name + ".wal")):
        path.unlink(missing_ok=True)
    interleaved(store, make_frame, 5)  # a flush into a file the writer creates anew
    assert store.index.query("SELECT count(*) FROM idx.segments")[0][0] == 1
    assert store.index.query("SELECT count(DISTINCT copy_path) FROM idx.stream_copies")[0][0] == 1
    # deleted again, and the new empty file gets the old one's inode (ext4 often reuses it): the
    # writer's cache of the file it applied the schema to is then fooled, its catalog is not
    for path in (store.index.path, store.index.path.with_name(store.index.path.name + ".wal")):
        path.unlink(missing_ok=True)
    duckdb.connect(str(store.index.path)).close()
    st = store.index.path.stat()
    store.index._schema_for = (st.st_dev, st.st_ino)  # what a reused inode looks like
    interleaved(store, make_frame, 5)
    assert store.index.query("SELECT count(*) FROM idx.segments")[0][0] == 1


def _row_groups(store: EventStore) -> list[list[int]]:
    import pyarrow.parquet as pq

    files = sorted(store.segments_dir.rglob("seg-*.parquet"))
    return [
        [pq.ParquetFile(f).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(f).num_row_groups)]
        for f in files
    ]


@pytest.mark.usefixtures("small_limits")
def test_a_bulk_batch_is_written_in_large_row_groups_and_a_flushed_tail_in_small_ones(
    store: EventStore, make_frame: MakeFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from settler_pipeline.store import writer

    monkeypatch.setattr(writer, "SEGMENT_ROW_GROUP_SIZE", 300)  # small: a flushed tail's row groups
    monkeypatch.setattr(writer, "BULK_ROW_GROUP_SIZE", 2_000)  # large: a bulk batch's
    interleaved(store, make_frame, 5)  # 1,000 events: the tail is flushed into a segment
    assert _row_groups(store) == [[300, 300, 300, 100]]
    store.append_frame(make_frame(5_000, streams=STREAMS, aggregate_type="Thing", first=1_000))
    assert _row_groups(store)[1] == [2_000, 2_000, 1_000]
    for stream in STREAMS[:3]:
        assert loaded(store, stream) == as_stored(store, stream)


@pytest.mark.usefixtures("small_limits")
def test_a_stream_in_a_bulk_segments_large_row_groups_is_read_without_decoding_them_whole(
    store: EventStore,
    make_frame: MakeFrame,
    open_store: OpenStore,
    monkeypatch: pytest.MonkeyPatch,
    reads: list[tuple[str, int]],
) -> None:
    from settler_pipeline.store import segment_reader, writer

    monkeypatch.setattr(writer, "BULK_ROW_GROUP_SIZE", 2_000)
    monkeypatch.setattr(segment_reader, "LARGE_READ_ROWS", 1_000)  # a bulk group is "large"
    store.append_frame(make_frame(5_000, streams=STREAMS, aggregate_type="Thing"))
    assert _row_groups(store) == [[2_000, 2_000, 1_000]]
    reads.clear()
    for stream in STREAMS[:4]:
        assert loaded(store, stream) == as_stored(store, stream)
        versions = [e.aggregate_version for e in store.get_events(stream, "Thing", 30, 70)]
        assert versions == list(range(30, 71))
        assert store.get_events(stream, "Other") == []
    assert reads == []  # no row group was decoded whole for one stream
    (segment,) = store.segments_dir.rglob("seg-*.parquet")
    store.close()
    blob = bytearray(segment.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    segment.write_bytes(bytes(blob))
    with pytest.raises(CorruptionError, match=segment.name):
        open_store(read_only=True).get_events(STREAMS[0], "Thing")
