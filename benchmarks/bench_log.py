"""The event log on interleaved work, Settler and the `eventsourcing` library (SQLite) in the same run.

Workload: streams of 100 events, each written in 20 batches: every 10,000-event batch appends 5 events
to each of 2,000 streams that already exist (after the first batch), so a stream's events are spread over
20 batches and 20 row groups. 200k events is one such group of 2,000 streams; larger logs add groups.
Measured on that log: columnar append to existing streams, envelope-object append, one-event commits
with name-based (UUIDv5) ids and expected versions, loading one 100-event stream, publishing 10k
events from the tail into the Delta table, full read.

Usage: python -m benchmarks.bench_log [EVENTS ...] (default 200000); results as JSON on stdout.
``make bench`` with ``BENCH_ONLY=log`` runs it at 200k and ``BENCH_LOG_EVENTS`` (default 10M) and
renders the section of ``docs/benchmarks.md`` (see ``benchmarks/log_report.py``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.store.event_ids import new_ids
from settler_pipeline.store.event_store import EventStore

STREAMS, PER_BATCH, BATCHES = 2_000, 5, 20  # a group: 2,000 streams x 100 events, in 20 batches of 10k
TENANT = str(uuid.UUID(int=1, version=4))
NAMESPACE = uuid.UUID(int=0xB3AC4)
DAY = datetime(2026, 11, 1, 12, tzinfo=UTC)


def group_streams(group: int) -> list[str]:
    return [str(uuid.uuid5(NAMESPACE, f"stream-{group}-{k}")) for k in range(STREAMS)]


def batch_frame(streams: list[str], batch: int) -> pl.DataFrame:
    """10,000 events: 5 for each stream, interleaved (stream order repeats)."""
    n = len(streams) * PER_BATCH
    return pl.DataFrame(
        {
            "event_id": new_ids(n),
            "aggregate_id": streams * PER_BATCH,
            "aggregate_type": ["reconciliation"] * n,
            "event_type": ["RecordMatched"] * n,
            "data": [f'{{"batch":{batch},"k":{k},"amount":{k * 7},"currency":"EUR"}}' for k in range(n)],
            "tenant_id": [TENANT] * n,
            "correlation_id": streams * PER_BATCH,
            "timestamp": pl.Series([DAY] * n, dtype=pl.Datetime("us", "UTC")),
        }
    )


def settler(path: Path, events: int) -> dict[str, Any]:
    store = EventStore.open(path)
    groups = max(1, events // (STREAMS * PER_BATCH * BATCHES))
    append_s = existing_events = 0.0
    to_tail, flushing = [], []  # batches that only commit to the tail, and those that flush it
    for group in range(groups):
        streams = group_streams(group)
        for b in range(BATCHES):
            frame = batch_frame(streams, b)
            started = time.perf_counter()
            store.append_frame(frame)
            took = time.perf_counter() - started
            if b:  # the streams exist from the second batch on
                append_s += took
                existing_events += frame.height
                (flushing if store.current_view().tail.rows == 0 else to_tail).append(took)
    head = store.head_position
    streams = group_streams(groups - 1)
    rng = random.Random(1)

    loads, frames = [], []
    for stream in rng.sample(group_streams(0), 60):  # streams of exactly 100 events in 20 batches
        started = time.perf_counter()
        got = store.get_events(stream, "reconciliation")
        loads.append(time.perf_counter() - started)
        assert len(got) == PER_BATCH * BATCHES, len(got)
        started = time.perf_counter()
        rows = store.stream_frame(stream, "reconciliation")
        frames.append(time.perf_counter() - started)
        assert rows.height == PER_BATCH * BATCHES, rows.height

    # envelope objects (a command handler's shape), 5 batches of 10k into existing streams
    env_s, env_events = 0.0, 0
    for b in range(5):
        chosen = rng.sample(streams, 1000)
        envelopes = [
            EventEnvelope(
                aggregate_id=s,
                aggregate_type="reconciliation",
                event_type="MatchConfirmed",
                data={"batch": b, "k": k},
                metadata=EventMetadata(tenant_id=TENANT, correlation_id=s),
            )
            for s in chosen
            for k in range(10)
        ]
        started = time.perf_counter()
        store.append(envelopes)
        env_s += time.perf_counter() - started
        env_events += len(envelopes)

    commits = []
    versions = {s: len(store.get_events(s, "reconciliation")) for s in rng.sample(streams, 50)}
    for i in range(1000):
        stream = rng.choice(list(versions))
        event = EventEnvelope(
            id=str(uuid.uuid5(NAMESPACE, f"command-{i}")),  # an idempotency key's name-based id
            aggregate_id=stream,
            aggregate_type="reconciliation",
            event_type="MatchConfirmed",
            data={"i": i},
            metadata=EventMetadata(tenant_id=TENANT, correlation_id=stream),
        )
        started = time.perf_counter()
        store.append([event], expected_versions={stream: versions[stream]})
        commits.append(time.perf_counter() - started)
        versions[stream] += 1

    # publish: 10k events committed to the tail, then published into the Delta table (what an
    # incremental read-model update pays before it reads them)
    store.publish()
    publishes = []
    for b in range(5):
        store.append_frame(batch_frame(streams, BATCHES + b))
        started = time.perf_counter()
        store.publish()
        publishes.append(time.perf_counter() - started)
    store.close()
    reads = []
    for _ in range(3):
        fresh = EventStore.open(path, read_only=True)
        started = time.perf_counter()
        rows = fresh.read().collect().height
        reads.append(time.perf_counter() - started)
        fresh.close()
    return {
        "events": head,
        "columnar_append_existing_events_per_s": existing_events / append_s,
        "tail_batch_p50_ms": statistics.median(to_tail) * 1000,
        "flushing_batch_p50_ms": statistics.median(flushing) * 1000 if flushing else None,
        "flushes": len(flushing),
        "envelope_append_events_per_s": env_events / env_s,
        "named_commit_p50_ms": statistics.median(commits) * 1000,
        "named_commit_p99_ms": sorted(commits)[int(len(commits) * 0.99)] * 1000,
        "stream_load_p50_ms": statistics.median(loads) * 1000,
        "stream_frame_p50_ms": statistics.median(frames) * 1000,
        "publish_10k_p50_ms": statistics.median(publishes) * 1000,
        "full_read_events_per_s": rows / statistics.median(reads),
        "full_read_first_s": reads[0],
    }


def anchor(path: Path, events: int) -> dict[str, Any]:
    """The same work with eventsourcing's SQLite recorder (its unit of work: StoredEvent objects)."""
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(path)))
    recorder.create_table()
    groups = max(1, events // (STREAMS * PER_BATCH * BATCHES))
    append_s = existing_events = 0.0
    for group in range(groups):
        streams = [uuid.UUID(s) for s in group_streams(group)]
        for b in range(BATCHES):
            started = time.perf_counter()
            stored = [
                StoredEvent(s, b * PER_BATCH + k + 1, "RecordMatched", f'{{"batch":{b},"k":{k}}}'.encode())
                for k in range(PER_BATCH)
                for s in streams
            ]
            recorder.insert_events(stored)
            if b:
                append_s += time.perf_counter() - started
                existing_events += len(stored)
    rng = random.Random(1)
    streams = [uuid.UUID(s) for s in group_streams(0)]
    loads = []
    for stream in rng.sample(streams, 60):
        started = time.perf_counter()
        got = [json.loads(e.state) for e in recorder.select_events(stream)]
        loads.append(time.perf_counter() - started)
        assert len(got) == PER_BATCH * BATCHES
    versions = {s: PER_BATCH * BATCHES for s in rng.sample(streams, 50)}
    commits = []
    for _ in range(1000):
        stream = rng.choice(list(versions))
        versions[stream] += 1
        started = time.perf_counter()
        recorder.insert_events([StoredEvent(stream, versions[stream], "MatchConfirmed", b'{"i":1}')])
        commits.append(time.perf_counter() - started)
    started = time.perf_counter()
    read, position = 0, 1
    while page := recorder.select_notifications(position, 100_000):
        read += len(page)
        position = page[-1].id + 1
    return {
        "events": read,
        "batch_append_existing_events_per_s": existing_events / append_s,
        "commit_p50_ms": statistics.median(commits) * 1000,
        "stream_load_p50_ms": statistics.median(loads) * 1000,
        "replay_events_per_s": read / (time.perf_counter() - started),
    }


def main(sizes: list[int]) -> dict[str, Any]:
    """Every measurement, each with the load average (1, 5, 15 min) when it finished."""
    work = Path(tempfile.mkdtemp(prefix="settler-bench-log-"))
    try:
        results: dict[str, Any] = {"anchor_200k": anchor(work / "anchor.sqlite", 200_000)}
        results["anchor_200k"]["load_average"] = os.getloadavg()
        for events in sizes:
            results[f"settler_{events}"] = settler(work / f"settler-{events}", events)
            results[f"settler_{events}"]["load_average"] = os.getloadavg()
            shutil.rmtree(work / f"settler-{events}")
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(main([int(a) for a in sys.argv[1:]] or [200_000]), indent=2))
