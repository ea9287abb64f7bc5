"""Several writers and readers on one log: commits interleave, readers never see half a batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from settler_pipeline.store import maintenance
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import MakeEvent, MakeFrame, bulk_batches_to_segments, uid

OpenStore = Callable[..., EventStore]
WORKERS = Path(__file__).parent / "workers"
ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def _run_between_refresh_and_index(reader: EventStore, action: Callable[[], Any]) -> None:
    """Make ``action`` (another instance's commit) happen right after ``reader`` took its view of the
    log and before it asks the index: the narrowest window a concurrent writer can hit."""
    original = reader.index.query
    fired = False

    def query(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        nonlocal fired
        if not fired:
            fired = True
            action()
        return original(sql, params)

    reader.index.query = query  # type: ignore[method-assign]


@pytest.fixture
def two_instances(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame
) -> tuple[EventStore, EventStore]:
    """A reader and a writer instance on a log whose stream uid(1) has events in two segments of one
    date and in the write-ahead tail, all in one flow; the reader has a cached view."""
    writer, reader = open_store(), open_store()
    stream, flow = uid(1), uid(1, kind=0xC)
    writer.append_frame(
        make_frame(BULK_ROWS, streams=[stream, uid(2)], aggregate_type="Thing", correlation_id=flow)
    )
    writer.append_frame(
        make_frame(BULK_ROWS, streams=[stream, uid(2)], aggregate_type="Thing", correlation_id=flow)
    )
    first = make_event(stream, correlation_id=flow, event_id=uid(1, kind=0xE))
    writer.append([first, make_event(stream, correlation_id=flow, causation_id=first.id)])
    assert reader.head_position == 2 * BULK_ROWS + 2
    return reader, writer


QUERIES: dict[str, Callable[[EventStore], list[int]]] = {
    "get_events": lambda s: [e.global_position or 0 for e in s.get_events(uid(1), "Thing")],
    "by_correlation": lambda s: [
        e.global_position or 0 for e in s.get_events_by_correlation_id(uid(1, kind=0xC))
    ],
    "causation_chain": lambda s: [e.global_position or 0 for e in s.get_causation_chain(uid(1, kind=0xE))],
}


@pytest.mark.parametrize("query", sorted(QUERIES))
@pytest.mark.parametrize("interloper", ["tail flush", "compaction"])
def test_a_read_racing_another_writer_returns_every_event_exactly_once(
    two_instances: tuple[EventStore, EventStore], make_frame: MakeFrame, query: str, interloper: str
) -> None:
    reader, writer = two_instances
    expected = QUERIES[query](writer)
    assert expected and len(expected) == len(set(expected))

    def interfere() -> None:
        if interloper == "tail flush":
            writer.append_frame(make_frame(BULK_ROWS, streams=[uid(3)], correlation_id=uid(3, kind=0xC)))
        else:
            report = maintenance.compact(writer)
            assert report.retired
            maintenance.compact(writer, grace_hours=0)  # and the replaced files deleted at once

    _run_between_refresh_and_index(reader, interfere)
    assert QUERIES[query](reader) == expected
    assert QUERIES[query](reader) == expected


def test_position_at_racing_a_compaction_still_finds_the_position(
    two_instances: tuple[EventStore, EventStore],
) -> None:
    reader, writer = two_instances
    events = writer.read().collect()
    when = events["created_at"][BULK_ROWS - 1]
    expected = writer.position_at(when)
    assert expected >= BULK_ROWS

    def compact_and_vacuum() -> None:
        maintenance.compact(writer)
        maintenance.compact(writer, grace_hours=0)  # the replaced files deleted under the reader

    _run_between_refresh_and_index(reader, compact_and_vacuum)
    assert reader.position_at(when) == expected


# -- several processes -----------------------------------------------------------------------------


def _spawn(script: str, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(WORKERS / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_concurrent_writers_with_expected_versions_and_a_reader_keep_the_log_whole(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stop = tmp_path / "stop"
    EventStore.open(data_dir).close()
    writers = 4
    reader = _spawn("concurrent_reader.py", data_dir, stop)
    procs = [
        _spawn("concurrent_writer.py", data_dir, w, 30, tmp_path / f"acks-{w}.jsonl") for w in range(writers)
    ]
    try:
        deadline = time.monotonic() + 240
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, f"writer failed:\n{out}\n{err}"
        stop.touch()
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, f"reader saw a broken log:\n{out}\n{err}"
    finally:
        for proc in [*procs, reader]:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    reads = json.loads(out.strip().splitlines()[-1])
    assert reads["reads"] >= 5, reads  # the reader really read while the writers wrote

    acked: dict[str, dict[str, Any]] = {}
    conflicts = 0
    for w in range(writers):
        for line in (tmp_path / f"acks-{w}.jsonl").read_text().splitlines():
            ack = json.loads(line)
            acked[ack["batch"]] = ack
            conflicts += ack["conflicts"]
    assert len(acked) == writers * 30
    assert conflicts > 0, "the writers never raced each other; the test proves nothing"

    with EventStore.open(data_dir) as store:
        events = store.read().collect()
        assert events["global_position"].to_list() == list(range(1, store.head_position + 1))
        assert events["event_id"].n_unique() == events.height
        by_id = dict(zip(events["event_id"].to_list(), events["global_position"].to_list(), strict=True))
        for ack in acked.values():
            positions = [by_id[i] for i in ack["event_ids"]]
            assert positions == ack["positions"] == list(range(ack["positions"][0], ack["positions"][-1] + 1))
        assert sum(len(a["event_ids"]) for a in acked.values()) == events.height
        versions = events.group_by("aggregate_id").agg(
            (pl.col("aggregate_version").sort_by("global_position") == pl.int_range(1, pl.len() + 1)).all()
        )
        assert versions["aggregate_version"].all()
        report = maintenance.verify(store)
        assert report.ok, report.problems
    print(json.dumps({**reads, "batches": len(acked), "conflicts": conflicts, "events": events.height}))
