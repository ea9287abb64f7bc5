"""The published log is a Delta Lake table that every engine reads the same: exactly the committed
events, each once, through publishes, compactions and the analysts' `events` view."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from settler_pipeline import projections
from settler_pipeline.store import maintenance, table
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import MakeEvent, MakeFrame, bulk_batches_to_segments, uid, utc
from tests.integration.test_log_cli import json_of, settler

OpenStore = Callable[..., EventStore]
STREAMS = [uid(1), uid(2), uid(3)]
DAYS = [utc(2026, 10, 30, 12), utc(2026, 10, 31, 12)]


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def fill(store: EventStore, make_event: MakeEvent, make_frame: MakeFrame) -> None:
    """Bulk batches over two event dates with small commits between them (a write-ahead tail)."""
    for k in range(2):
        store.append([make_event(STREAMS[k], timestamp=DAYS[k]) for _ in range(3)])
        store.append_frame(
            make_frame(BULK_ROWS, streams=STREAMS, aggregate_type="Thing", timestamps=[DAYS[k]] * BULK_ROWS)
        )
    store.append([make_event(STREAMS[2], timestamp=DAYS[1])])


def engines(uri: str) -> dict[str, pl.DataFrame]:
    """The table's positions as each engine reads them."""
    files = DeltaTable(uri).file_uris()
    con = duckdb.connect()
    try:
        by_duckdb = con.sql(
            "SELECT global_position FROM read_parquet($1::VARCHAR[], hive_partitioning = true)",
            params=[files],
        ).pl()
    finally:
        con.close()
    return {
        "deltalake": pl.from_arrow(DeltaTable(uri).to_pyarrow_table(columns=["global_position"])),  # type: ignore[dict-item]
        "polars": pl.scan_delta(uri).select("global_position").collect(),
        "duckdb over the file list": by_duckdb,
    }


def assert_exactly(uri: str, head: int) -> None:
    for engine, frame in engines(uri).items():
        positions = frame["global_position"].sort().to_list()
        assert positions == list(range(1, head + 1)), f"{engine}: {len(positions)} rows, head {head}"


def test_publish_makes_every_committed_event_readable_by_every_engine(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    fill(store, make_event, make_frame)
    head = store.head_position
    assert store.current_view().tail.rows > 0, "some events wait in the private tail"
    assert store.publish() == head
    assert store.current_view().tail.rows == 0
    assert_exactly(store.table_uri, head)
    table = pl.scan_delta(store.table_uri).collect()
    assert table["event_date"].dtype == pl.Date and table["event_date"].n_unique() == 2
    stored = store.read().collect()
    assert table.sort("global_position").select(stored.columns).equals(stored)
    version = DeltaTable(store.table_uri).version()
    assert store.publish() == head and DeltaTable(store.table_uri).version() == version, "idempotent"
    assert maintenance.verify(store).ok


def test_compaction_replaces_files_in_one_commit_and_no_version_shows_an_event_twice(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    fill(store, make_event, make_frame)
    head = store.publish()
    before = DeltaTable(store.table_uri).version()
    report = maintenance.compact(store)
    assert report.retired, "something was merged"
    assert_exactly(store.table_uri, head)
    assert DeltaTable(store.table_uri).version() == before + 1
    live = {s.path for s in store.current_view().manifest.segments}
    root = Path(store.table_uri)
    assert {Path(u).relative_to(root).as_posix() for u in DeltaTable(store.table_uri).file_uris()} == live
    old = DeltaTable(store.table_uri, version=before)  # time travel: the version before compaction
    assert len(old.file_uris()) > len(live)


def test_after_settler_log_compact_every_earlier_version_still_reads_the_events_it_had(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    """Time travel and a reader that planned on the version before: compaction leaves the files it
    replaced in place (Delta removes them from the new version only) until a vacuum after the grace
    period, so deltalake and Polars read every earlier version exactly as before."""
    fill(store, make_event, make_frame)
    store.publish()
    uri, newest, head = store.table_uri, DeltaTable(store.table_uri).version(), store.head_position
    store.close()

    def at(version: int) -> dict[str, pl.DataFrame]:
        return {
            "deltalake": pl.from_arrow(DeltaTable(uri, version=version).to_pyarrow_table())  # type: ignore[dict-item]
            .select(pl.exclude("event_date"))
            .sort("global_position"),
            "polars": pl.scan_delta(uri, version=version)
            .select(pl.exclude("event_date"))
            .collect()
            .sort("global_position"),
        }

    had = {version: at(version) for version in range(newest + 1)}
    assert had[newest]["polars"].height == head
    planned = DeltaTable(uri, version=newest)  # a reader that listed its files before the compaction
    compacted = settler("log", "compact", "--data-dir", store.data_dir, "--json")
    assert compacted.returncode == 0, compacted.stderr
    assert json_of(compacted)["retired"], "something was merged"
    assert DeltaTable(uri).version() == newest + 1
    for version, frames in had.items():
        for engine, frame in at(version).items():
            assert frame.equals(frames[engine]), f"{engine} at version {version}"
    assert planned.to_pyarrow_table().num_rows == head
    assert_exactly(uri, head)
    verified = settler("log", "verify", "--data-dir", store.data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_every_segment_commit_is_a_delta_commit_and_the_tail_stays_private(
    store: EventStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    assert DeltaTable(store.table_uri).file_uris() == []  # a new log is an empty table
    assert pl.scan_delta(store.table_uri).collect().height == 0
    for k in range(2):
        store.append_frame(make_frame(BULK_ROWS, streams=STREAMS, aggregate_type="Thing"))
        assert_exactly(store.table_uri, (k + 1) * BULK_ROWS)
        assert table.published_head(store.segments_dir) == (k + 1) * BULK_ROWS
    store.append([make_event(STREAMS[0])])
    assert store.head_position == 2 * BULK_ROWS + 1
    assert_exactly(store.table_uri, 2 * BULK_ROWS)  # the one-event commit waits in the private tail
    version = DeltaTable(store.table_uri).version()
    state = table.read_state(store.segments_dir, version)
    assert state is not None and state == store.current_view().manifest
    assert state.wal_first_position == 2 * BULK_ROWS + 1


def test_after_project_the_events_view_and_the_table_hold_every_event(
    store: EventStore, data_dir: Path, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    fill(store, make_event, make_frame)
    head = store.head_position
    projections.update(store, data_dir)
    assert projections.sql(data_dir, "SELECT count(*) AS n FROM events")["n"][0] == head
    positions = projections.sql(data_dir, "SELECT global_position FROM events ORDER BY 1")
    assert positions["global_position"].to_list() == list(range(1, head + 1))
    assert_exactly(store.table_uri, head)
    store.append([make_event(STREAMS[0])])
    projections.update(store, data_dir)
    assert projections.sql(data_dir, "SELECT count(*) AS n FROM events")["n"][0] == head + 1


def test_stats_and_publish_on_the_command_line(
    store: EventStore, data_dir: Path, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    fill(store, make_event, make_frame)
    head = store.head_position
    before = json_of(settler("log", "stats", "--data-dir", data_dir, "--json"))
    assert before["head_position"] == head and before["published_position"] < head
    published = settler("log", "publish", "--data-dir", data_dir, "--json")
    assert published.returncode == 0, published.stderr
    assert json_of(published)["published_position"] == head
    after = json_of(settler("log", "stats", "--data-dir", data_dir, "--json"))
    assert after["published_position"] == after["head_position"] == head
    assert len(DeltaTable(after["table_uri"]).to_pyarrow_table(columns=["event_id"])) == head


def _commit(store: EventStore, make_frame: MakeFrame, times: int) -> None:
    for _ in range(times):
        store.append_frame(make_frame(BULK_ROWS, streams=STREAMS, aggregate_type="Thing"))


def test_an_aged_transaction_log_keeps_its_commits_and_stays_writable(
    store: EventStore, make_frame: MakeFrame
) -> None:
    _commit(store, make_frame, 12)  # past the first checkpoint (every 10 commits)
    log = store.segments_dir / table.LOG_FOLDER
    month_and_more = time.time() - 40 * 86400
    for path in log.iterdir():
        os.utime(path, (month_and_more, month_and_more))  # older than Delta's 30-day log retention
    _commit(store, make_frame, 10)  # past the next checkpoint, where clean-up would run
    assert table.commit_file(store.segments_dir, 0).is_file(), "commit files are never cleaned up"
    assert DeltaTable(store.table_uri).metadata().configuration["delta.enableExpiredLogCleanup"] == "false"
    assert_exactly(store.table_uri, 22 * BULK_ROWS)
    assert maintenance.verify(store).ok


def test_a_log_whose_oldest_commits_were_cleaned_up_by_another_writer_is_still_the_table(
    store: EventStore, make_frame: MakeFrame
) -> None:
    _commit(store, make_frame, 11)
    log = store.segments_dir / table.LOG_FOLDER
    assert (log / f"{9:020d}.checkpoint.parquet").is_file()
    for version in range(9):  # what an engine's expired-log clean-up does once a checkpoint covers them
        table.commit_file(store.segments_dir, version).unlink()
    assert table.exists(store.segments_dir)
    _commit(store, make_frame, 1)
    assert table.current_files(store.segments_dir) == {s.path for s in store.current_view().manifest.segments}
    assert_exactly(store.table_uri, 12 * BULK_ROWS)


def test_a_checkpoint_that_cannot_be_written_does_not_fail_the_commit_it_follows(
    store: EventStore, make_frame: MakeFrame
) -> None:
    _commit(store, make_frame, 8)
    assert DeltaTable(store.table_uri).version() == 8, "the next commit is one a checkpoint follows"
    blocked = store.segments_dir / table.LOG_FOLDER / f"{9:020d}.checkpoint.parquet"
    blocked.mkdir()  # writing the checkpoint fails
    frame = make_frame(BULK_ROWS, streams=STREAMS, aggregate_type="Thing").drop("event_id")
    positions = store.append_frame(frame)  # acknowledged once, not raised after the commit and repeated
    assert positions == list(range(8 * BULK_ROWS + 1, 9 * BULK_ROWS + 1))
    assert blocked.is_dir() and DeltaTable(store.table_uri).version() == 9
    _commit(store, make_frame, 1)
    assert store.head_position == 10 * BULK_ROWS
    assert_exactly(store.table_uri, 10 * BULK_ROWS)


def test_the_events_generation_names_exactly_the_tables_files_after_compaction(
    store: EventStore,
    data_dir: Path,
    make_event: MakeEvent,
    make_frame: MakeFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from settler_pipeline.projections.generations import Generations
    from settler_pipeline.projections.logrows import EVENTS, LogFiles

    fill(store, make_event, make_frame)
    projections.update(store, data_dir)
    assert maintenance.compact(store).retired, "something was merged"
    store.append([make_event(STREAMS[0])])
    projections.update(store, data_dir)
    replayed = sorted(table.current_files(store.segments_dir))  # what deltalake's replay of the log says
    manifest = Generations(projections.read_models_dir(data_dir), EVENTS).manifest()
    assert manifest is not None and manifest["files"] == replayed
    # a newest commit without the log's state (another writer's): the files come from the replay
    monkeypatch.setattr(table, "read_state", lambda *_: None)
    assert LogFiles.published(store).files(fresh=True) == replayed


@pytest.mark.parametrize("folder", ["My Documents", "Données", "a#b"])
def test_a_data_directory_whose_path_needs_percent_encoding_commits_compacts_and_verifies(
    tmp_path: Path, folder: str, open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    # deltalake names the files of a table at /x/My Documents as /x/My%20Documents/...: the second
    # commit (the first that compares the table's files with the log's) must not take them for others.
    store = open_store(tmp_path / folder / "data")
    fill(store, make_event, make_frame)
    head = store.publish()
    assert maintenance.compact(store).retired
    store.append([make_event(STREAMS[0], timestamp=DAYS[1])])
    assert store.publish() == head + 1
    assert table.current_files(store.segments_dir) == {s.path for s in store.current_view().manifest.segments}
    assert maintenance.verify(store).ok
    assert DeltaTable(store.table_uri).to_pyarrow_table(columns=["global_position"]).num_rows == head + 1
