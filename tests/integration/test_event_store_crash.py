"""A writer killed with SIGKILL at random moments loses no acknowledged batch and leaves no partial one."""

from __future__ import annotations

import json
import os
import random
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from settler_pipeline.store import maintenance, wal
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import MakeEvent, MakeFrame, bulk_batches_to_segments, uid
from tests.integration.workers.crash_batches import AGGREGATE_TYPE, STREAMS, batch

WORKER = Path(__file__).parent / "workers" / "crash_appender.py"
ROOT = Path(__file__).parents[2]
KILLS = 50
ACK = re.compile(r"^ACK (\d+) (\d+) (\d+)( retry)?$")


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


class Run:
    """One life of the worker: started (importing), told where to begin, given time to append, killed."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(data_dir)],
            bufsize=0,  # unbuffered: reading the READY line must not swallow ACK lines behind it
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdout = self.proc.stdout
        self.stdin = self.proc.stdin

    def go(self, first_batch: int, timeout_s: float = 60.0) -> int:
        """Let the worker open the store and append from ``first_batch`` on; returns the head it saw
        after opening (and so recovering) the store."""
        self.stdin.write(f"GO {first_batch}\n".encode())
        self.stdin.flush()
        ready, _, _ = select.select([self.stdout], [], [], timeout_s)
        line = self.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"worker did not start: {line!r}\n{err.decode()}")
        return int(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def kill(self) -> tuple[list[tuple[int, int, int, bool]], bool]:
        """SIGKILL the worker; returns its acknowledgements and whether an append was under way."""
        self.proc.kill()  # no cleanup, no flush beyond what was already written
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == -9, f"worker died on its own:\n{err.decode()}"
        acks = []
        lines = out.decode().splitlines()
        for line in lines:
            if match := ACK.match(line):
                acks.append((int(match[1]), int(match[2]), int(match[3]), match[4] is not None))
        return acks, bool(lines) and lines[-1].startswith("BEGIN ")


@pytest.mark.slow
def test_a_writer_killed_mid_append_loses_no_acknowledged_batch_and_leaves_no_partial_one(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261126)
    data_dir = tmp_path / "data"
    acked: dict[int, tuple[int, int]] = {}
    retries = mid_appends = 0
    started = time.monotonic()
    upcoming = Run(data_dir)
    try:
        lives = 0
        # KILLS lives at least; on a loaded machine a life may end before its first batch, so go on
        # (within a time budget) until enough batches were acknowledged to mean something.
        while lives < KILLS or (len(acked) < 10 and time.monotonic() - started < 240):
            lives += 1
            run, upcoming = upcoming, Run(data_dir)  # the next life imports while this one appends
            head = run.go(max(acked, default=-1) + 1)
            newest_acked = max((last for _, last in acked.values()), default=0)
            assert head >= newest_acked, "an acknowledged batch was lost by recovery"
            time.sleep(rng.uniform(0.0, 0.3))
            acks, mid_append = run.kill()
            mid_appends += mid_append
            for number, first, last, retry in acks:
                retries += retry
                if number in acked:
                    assert acked[number] == (first, last)
                acked[number] = (first, last)
    finally:
        upcoming.stop()
    elapsed = time.monotonic() - started
    assert len(acked) >= 10, f"only {len(acked)} batches in {elapsed:.0f}s: the worker barely ran"
    assert mid_appends >= KILLS // 2, f"only {mid_appends} of {KILLS} kills landed during an append"

    # The published table as the kills left it: whole commits only, each event once, no file missing.
    segments = data_dir / "log" / "segments"
    published = (segments / "_delta_log" / f"{0:020d}.json").exists()
    published_files = DeltaTable(str(segments.resolve())).file_uris() if published else []
    assert all(Path(uri).exists() for uri in published_files)
    left = pl.scan_parquet(published_files, hive_partitioning=True).collect() if published_files else None
    if left is not None:
        assert left["global_position"].sort().to_list() == list(range(1, left.height + 1))

    with EventStore.open(data_dir) as store:
        events = store.read().collect()
        head = store.head_position
        assert events["global_position"].to_list() == list(range(1, head + 1))
        store.publish()
        table = pl.scan_delta(store.table_uri).select("global_position", "event_id").collect()
        assert table.sort("global_position")["global_position"].to_list() == list(range(1, head + 1))
        assert table["event_id"].n_unique() == head
        assert events["event_id"].n_unique() == events.height

        marked = events.with_columns(
            pl.col("data")
            .str.json_decode(pl.Struct({"batch": pl.Int64, "k": pl.Int64, "size": pl.Int64}))
            .alias("m")
        ).unnest("m")
        present = set(marked["batch"].unique().to_list())
        newest = max(acked)
        assert present <= set(acked) | {newest + 1}, "a batch that was never sent is in the log"
        assert set(acked) <= present

        for number in sorted(present):
            rows = marked.filter(pl.col("batch") == number)
            expected = batch(number).frame
            assert rows.height == expected.height, (
                f"batch {number} is partial: {rows.height}/{expected.height}"
            )
            positions = rows["global_position"].to_list()
            assert positions == list(range(positions[0], positions[0] + rows.height))
            if number in acked:
                assert (positions[0], positions[-1]) == acked[number]
            for column in ("event_id", "aggregate_id", "event_type", "data", "correlation_id", "timestamp"):
                assert rows[column].to_list() == expected[column].to_list(), f"batch {number}: {column}"

        for stream in STREAMS:
            versions = [e.aggregate_version for e in store.get_events(stream, AGGREGATE_TYPE)]
            assert versions == list(range(1, events.filter(pl.col("aggregate_id") == stream).height + 1))
        report = maintenance.verify(store)
        assert report.ok, report.problems
        assert len(list(store.staging_dir.iterdir())) == 0
    print(json.dumps({"kills": KILLS, "mid_append": mid_appends, "batches": len(acked), "events": head}))
    print(json.dumps({"retries_acknowledged": retries, "seconds": round(elapsed)}))


# -- interrupted writes, deterministically -----------------------------------------------------------


class Killed(BaseException):
    """Stands in for SIGKILL at one exact point of a commit (BaseException: nothing may catch it)."""


def _files(store: EventStore) -> set[str]:
    return {str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file()}


def _index_paths(store: EventStore) -> set[str]:
    return {row[0] for row in store.index.query("SELECT path FROM idx.segments")}


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("segment files written", False),
        ("index rows added", False),
        ("delta commit made", True),
    ],
)
def test_a_commit_interrupted_at_any_step_is_all_or_nothing_after_reopening(
    open_store: Callable[..., EventStore],
    make_event: MakeEvent,
    make_frame: MakeFrame,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    committed: bool,
) -> None:
    writer = open_store()
    writer.append([make_event(uid(1)) for _ in range(3)])  # a write-ahead tail the flush takes along
    writer.append_frame(make_frame(BULK_ROWS, streams=[uid(1)], aggregate_type="Thing"))
    before = writer.read().collect()

    if point == "segment files written":
        monkeypatch.setattr(writer.index, "add_segments", _raise_killed)
    elif point == "index rows added":
        monkeypatch.setattr(delta_table, "commit", _raise_killed)
    else:
        original = writer._store_manifest

        def store_then_die(*args: Any, **kwargs: Any) -> Any:
            original(*args, **kwargs)
            raise Killed

        monkeypatch.setattr(writer, "_store_manifest", store_then_die)
    batch = make_frame(BULK_ROWS + 7, streams=[uid(1), uid(2)], aggregate_type="Thing")
    with pytest.raises(Killed):
        writer.append_frame(batch)
    monkeypatch.undo()

    reopened = open_store()
    expected_head = before.height + (batch.height if committed else 0)
    assert reopened.head_position == expected_head
    events = reopened.read().collect()
    assert events.head(before.height).equals(before)
    assert events["global_position"].to_list() == list(range(1, expected_head + 1))
    manifest_paths = {s.path for s in reopened._refresh().manifest.segments}
    on_disk = {
        p.relative_to(reopened.segments_dir).as_posix() for p in reopened.segments_dir.rglob("*.parquet")
    }
    assert on_disk == manifest_paths, "recovery removes segment files no commit names"
    assert delta_table.current_files(reopened.segments_dir) == manifest_paths, "the table is the commit"
    assert _index_paths(reopened) == manifest_paths, "recovery removes index rows of uncommitted segments"
    assert [w.name for w in reopened.wal_dir.iterdir()] in (
        [],
        [wal.wal_name(expected_head + 1)],
    )
    assert not any(reopened.staging_dir.iterdir())
    assert reopened.append_frame(batch) == list(range(before.height + 1, before.height + batch.height + 1))
    assert reopened.append([make_event(uid(1))]) == [before.height + batch.height + 1]
    assert maintenance.verify(reopened).ok


def _raise_killed(*args: Any, **kwargs: Any) -> Any:
    raise Killed


@pytest.mark.parametrize("damage", ["torn record", "bad checksum", "garbage"])
def test_a_damaged_last_write_ahead_record_is_not_part_of_the_log(
    open_store: Callable[..., EventStore], make_event: MakeEvent, damage: str
) -> None:
    writer = open_store()
    writer.append([make_event(uid(1))])
    writer.append([make_event(uid(1)), make_event(uid(1))])
    (wal_file,) = list(writer.wal_dir.iterdir())
    good = wal_file.stat().st_size
    record = wal.encode(writer._refresh().tail.batches[-1])
    blob = wal_file.read_bytes()
    if damage == "torn record":
        wal_file.write_bytes(blob + record[: len(record) // 2])
    elif damage == "bad checksum":
        broken = bytearray(record)
        broken[-5] ^= 0xFF
        wal_file.write_bytes(blob + bytes(broken))
    else:
        wal_file.write_bytes(blob + os.urandom(100))

    reader = open_store()  # recovery cuts the damaged record off
    assert reader.head_position == 3
    assert wal_file.stat().st_size == good
    assert reader.append([make_event(uid(1))]) == [4]
    assert writer.append([make_event(uid(1))]) == [5]
    assert [e.aggregate_version for e in open_store().get_events(uid(1), "Thing")] == [1, 2, 3, 4, 5]
    assert maintenance.verify(reader).ok


def test_a_writer_cuts_off_a_torn_record_it_did_not_write(
    open_store: Callable[..., EventStore], make_event: MakeEvent
) -> None:
    writer = open_store()
    writer.append([make_event(uid(1))])
    (wal_file,) = list(writer.wal_dir.iterdir())
    with wal_file.open("ab") as handle:
        handle.write(b"SWL1\x00\x00\x00\x00\x00\x00\x10\x00partial")  # a record another writer began
    assert writer.append([make_event(uid(1))]) == [2]
    assert open_store().head_position == 2
    assert maintenance.verify(writer).ok


def test_leftovers_of_interrupted_writes_move_to_quarantine_on_open(
    open_store: Callable[..., EventStore], make_event: MakeEvent, make_frame: MakeFrame
) -> None:
    store = open_store()
    store.append_frame(make_frame(BULK_ROWS))
    store.append([make_event()])
    before = store.read().collect()
    kept = _files(store)
    segment = next(store.segments_dir.rglob("*.parquet"))
    leftovers = [
        store.staging_dir / "seg-000000002002-000000004001.123.parquet",
        segment.with_name("seg-000000002002-000000004001-" + "a" * 32 + ".parquet"),
        store.wal_dir / wal.wal_name(1),
    ]
    for path in leftovers:
        path.write_bytes(segment.read_bytes()[:500])
    reopened = open_store()
    assert not any(p.exists() for p in leftovers)
    quarantined = [p for p in (reopened.root / "quarantine").rglob("*") if p.is_file()]
    assert sorted(p.name for p in quarantined) == sorted(p.name for p in leftovers), "nothing is deleted"
    assert _files(reopened) >= kept
    assert reopened.read().collect().equals(before)
    assert maintenance.verify(reopened).ok
