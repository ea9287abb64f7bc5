"""Event store benchmarks, with the Python `eventsourcing` library (SQLite) on the same work.

Workload: a log shaped like reconciliation runs. Each 1M-event batch holds 990 large runs of 1,000
events (Started, two Fetched, RecordMatched/RecordUnmatched, Completed) and 100 small runs of 100 events,
so the full 10M-event log has ~10.9k streams. Every measurement runs in a fresh subprocess so its peak
RSS (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.ids import new_id
from settler_pipeline.store.event_ids import new_ids
from settler_pipeline.store.event_store import PROJECTION_COLUMNS, EventStore
from settler_pipeline.store.payloads import typed_from_json

TENANTS = [str(uuid.UUID(int=i + 1, version=4)) for i in range(5)]
BIG, BIG_EVENTS, SMALL, SMALL_EVENTS = 990, 1000, 100, 100
BATCH = BIG * BIG_EVENTS + SMALL * SMALL_EVENTS  # 1,000,000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(batch_no: int, scale: float = 1.0) -> tuple[pl.DataFrame, list[str]]:
    """One batch of run-shaped events (columnar) and the ids of its small (100-event) streams."""
    big, small = max(1, int(BIG * scale)), max(1, int(SMALL * scale))
    rng = np.random.default_rng(batch_no)
    day = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=batch_no % 7)
    sizes = [BIG_EVENTS] * big + [SMALL_EVENTS] * small
    streams = [new_id() for _ in sizes]
    n = sum(sizes)
    stream_col = np.repeat(np.array(streams, dtype=object), sizes)
    offsets = np.concatenate([np.arange(s) for s in sizes])
    last = np.concatenate([np.arange(s) == s - 1 for s in sizes])
    kinds = np.where(
        offsets == 0,
        "ReconciliationStarted",
        np.where(
            offsets <= 2,
            np.where(offsets == 1, "SourceRecordsFetched", "TargetRecordsFetched"),
            np.where(
                last,
                "ReconciliationCompleted",
                np.where(rng.random(n) < 0.97, "RecordMatched", "RecordUnmatched"),
            ),
        ),
    )
    amounts = rng.integers(100, 1_000_000, n)
    frame = (
        pl.DataFrame(
            {
                "aggregate_id": stream_col.astype(str),
                "event_type": kinds.astype(str),
                "amount": amounts,
                "tenant_id": np.array(TENANTS, dtype=object)[rng.integers(0, len(TENANTS), n)].astype(str),
            }
        )
        .with_columns(
            pl.lit("reconciliation").alias("aggregate_type"),
            pl.concat_str(
                pl.lit('{"attempt":1,"match_id":"m'),
                pl.int_range(pl.len()).cast(pl.String),
                pl.lit('","amount":'),
                pl.col("amount").cast(pl.String),
                pl.lit(',"currency":"EUR","side":"source","reason":"missing_settlement"}'),
            ).alias("data"),
            pl.col("aggregate_id").alias("correlation_id"),
            pl.lit(day).alias("timestamp"),
        )
        .drop("amount")
    )
    # a run brings its payload as typed columns beside the JSON (application/run_events.py): so do these
    typed = typed_from_json(frame.with_columns(pl.lit(1, pl.Int32).alias("event_version")))
    return typed.with_columns(new_ids(n)), streams[big:]


# -- measurements (each runs in its own process) ---------------------------------------------------


def build_log(path: str, batches: int, scale: float = 1.0) -> dict[str, Any]:
    """Append ``batches`` columnar batches; returns throughput and the small streams' ids."""
    store = EventStore.open(path)
    times, small_streams, events = [], [], 0
    for b in range(batches):
        frame, smalls = make_batch(b, scale)
        small_streams.extend(smalls)
        started = time.perf_counter()
        store.append_frame(frame)
        times.append(time.perf_counter() - started)
        events += frame.height
    return {
        "events": events,
        "seconds": sum(times),
        "events_per_s": events / sum(times),
        "batch_median_s": statistics.median(times),
        "small_streams": small_streams,
        "peak_rss_mb": peak_rss_mb(),
    }


def envelope_append(path: str, events: int = 100_000, batch: int = 10_000) -> dict[str, Any]:
    store = EventStore.open(path)
    total = 0.0
    for _ in range(events // batch):
        stream = new_id()
        envelopes = [
            EventEnvelope(
                aggregate_id=stream,
                aggregate_type="reconciliation",
                event_type="RecordMatched",
                data={"attempt": 1, "match_id": f"m{i}", "amount": i, "currency": "EUR"},
                metadata=EventMetadata(tenant_id=TENANTS[0], correlation_id=stream),
            )
            for i in range(batch)
        ]
        started = time.perf_counter()
        store.append(envelopes)
        total += time.perf_counter() - started
    return {"events": events, "events_per_s": events / total, "peak_rss_mb": peak_rss_mb()}


def misfit_publish(path: str, events: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    """Publish a tail of ``events`` RecordMatched events (typed from their JSON as it moves into a
    segment) whose payloads all fit, 1% do not fit the payload model, or none fits: median seconds."""
    out: dict[str, Any] = {"events": events}
    for name, share in (("fit", 0), ("one_percent", 100), ("none", 1)):
        times = []
        for r in range(repeats):
            store = EventStore.open(Path(path) / f"{name}-{r}")
            stream = new_id()
            store.append(
                [
                    EventEnvelope(
                        aggregate_id=stream,
                        aggregate_type="reconciliation",
                        event_type="RecordMatched",
                        data={
                            "attempt": 1,
                            "match_id": f"m{i}",
                            "amount": f"{i} EUR" if share and i % share == 0 else i,
                            "currency": "EUR",
                        },
                        metadata=EventMetadata(tenant_id=TENANTS[0], correlation_id=stream),
                    )
                    for i in range(events)
                ]
            )
            started = time.perf_counter()
            store.publish()
            times.append(time.perf_counter() - started)
            store.close()
        out[f"publish_{name}_s"] = statistics.median(times)
    return out


def small_commits(path: str, commits: int = 3000) -> dict[str, Any]:
    store = EventStore.open(path)
    rng = random.Random(1)
    streams: dict[str, int] = {}
    samples = []
    for i in range(commits):
        if not streams or rng.random() < 0.3:
            stream, version = new_id(), 0
        else:
            stream = rng.choice(list(streams))
            version = streams[stream]
        n = rng.randint(1, 3)
        events = [
            EventEnvelope(
                aggregate_id=stream,
                aggregate_type="reconciliation",
                event_type="MatchConfirmed",
                data={"match_id": f"m{i}", "confirmed_by": "bench"},
                metadata=EventMetadata(tenant_id=TENANTS[i % len(TENANTS)], correlation_id=stream),
            )
            for _ in range(n)
        ]
        started = time.perf_counter()
        store.append(events, expected_versions={stream: version})
        samples.append(time.perf_counter() - started)
        streams[stream] = version + n
    return {
        "commits": commits,
        "commits_per_s": commits / sum(samples),
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": sorted(samples)[int(len(samples) * 0.99)] * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


def stream_loads(path: str, streams: list[str], samples: int = 60) -> dict[str, Any]:
    store = EventStore.open(path)
    rng = random.Random(2)
    chosen = [rng.choice(streams) for _ in range(samples)]
    store.get_events(chosen[0], "reconciliation")  # warm footers and connection
    load, snap = [], []
    for stream in chosen:
        started = time.perf_counter()
        events = store.get_events(stream, "reconciliation")
        load.append(time.perf_counter() - started)
        assert len(events) == SMALL_EVENTS, len(events)
    for stream in chosen[: samples // 2]:
        store.save_snapshot(stream, "reconciliation", 80, {"status": "running"}, schema_version=1)
    for stream in chosen[: samples // 2]:
        started = time.perf_counter()
        snapshot = store.get_latest_snapshot(stream, "reconciliation", schema_version=1)
        assert snapshot is not None
        tail = store.get_events_after_snapshot(stream, "reconciliation", snapshot.aggregate_version)
        snap.append(time.perf_counter() - started)
        assert len(tail) == SMALL_EVENTS - 80
    return {
        "stream_load_p50_ms": statistics.median(load) * 1000,
        "stream_load_p95_ms": sorted(load)[int(len(load) * 0.95)] * 1000,
        "snapshot_tail_p50_ms": statistics.median(snap) * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


def full_read(path: str) -> dict[str, Any]:
    store = EventStore.open(path)
    started = time.perf_counter()
    frame = store.read().collect()
    plain = time.perf_counter() - started
    events = frame.height
    del frame
    started = time.perf_counter()
    fields = store.read_fields(
        {"attempt": pl.Int64, "amount": pl.Int64, "currency": pl.String, "reason": pl.String}
    )
    with_fields = time.perf_counter() - started
    assert fields.height == events
    del fields
    started = time.perf_counter()
    typed = store.read(payload_fields=["attempt", "amount", "currency", "reason"]).collect()
    with_typed = time.perf_counter() - started
    assert typed.height == events and typed["payload_typed"].all()
    del typed
    # what a replay reads: the envelope columns a fold uses and the payload fields, typed (the JSON
    # text of `data` is not one of them), as the read-model benchmark measures it
    started = time.perf_counter()
    fields_only = (
        store.read(payload_fields=["attempt", "amount", "currency", "reason"])
        .select(*PROJECTION_COLUMNS, "attempt", "amount", "currency", "reason")
        .collect()
    )
    with_typed_only = time.perf_counter() - started
    assert fields_only.height == events
    return {
        "events": events,
        "read_events_per_s": events / plain,
        "read_with_fields_events_per_s": events / with_fields,
        "read_with_typed_fields_events_per_s": events / with_typed,
        "read_typed_fields_only_events_per_s": events / with_typed_only,
        "peak_rss_mb": peak_rss_mb(),
    }


# -- eventsourcing (SQLite) on the same work -------------------------------------------------------


def es_recorder(path: str) -> Any:
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    recorder = SQLiteApplicationRecorder(SQLiteDatastore(path))
    recorder.create_table()
    return recorder


def es_build(path: str, batches: int, scale: float) -> dict[str, Any]:
    from eventsourcing.persistence import StoredEvent

    recorder = es_recorder(path)
    times, small_streams, events = [], [], 0
    for b in range(batches):
        frame, smalls = make_batch(b, scale)
        small_streams.extend(smalls)
        started = time.perf_counter()
        # the library's unit of work is a list of StoredEvent objects; building them is part of its cost
        versions = frame.select(pl.int_range(pl.len()).over("aggregate_id").alias("v"))["v"].to_list()
        stored = [
            StoredEvent(uuid.UUID(a), v + 1, t, d.encode())
            for a, v, t, d in zip(
                frame["aggregate_id"].to_list(),
                versions,
                frame["event_type"].to_list(),
                frame["data"].to_list(),
                strict=True,
            )
        ]
        for i in range(0, len(stored), 100_000):
            recorder.insert_events(stored[i : i + 100_000])
        times.append(time.perf_counter() - started)
        events += frame.height
    return {
        "events": events,
        "events_per_s": events / sum(times),
        "small_streams": small_streams,
        "peak_rss_mb": peak_rss_mb(),
    }


def es_small_commits(path: str, commits: int = 3000) -> dict[str, Any]:
    from eventsourcing.persistence import StoredEvent

    recorder = es_recorder(path)
    rng = random.Random(1)
    streams: dict[uuid.UUID, int] = {}
    samples = []
    for i in range(commits):
        if not streams or rng.random() < 0.3:
            stream, version = uuid.uuid4(), 0
        else:
            stream = rng.choice(list(streams))
            version = streams[stream]
        n = rng.randint(1, 3)
        payload = json.dumps({"match_id": f"m{i}", "confirmed_by": "bench"}).encode()
        events = [StoredEvent(stream, version + k + 1, "MatchConfirmed", payload) for k in range(n)]
        started = time.perf_counter()
        recorder.insert_events(events)
        samples.append(time.perf_counter() - started)
        streams[stream] = version + n
    return {
        "commits_per_s": commits / sum(samples),
        "p50_ms": statistics.median(samples) * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


def es_stream_loads(path: str, streams: list[str], samples: int = 60) -> dict[str, Any]:
    recorder = es_recorder(path)
    rng = random.Random(2)
    chosen = [uuid.UUID(rng.choice(streams)) for _ in range(samples)]
    load = []
    for stream in chosen:
        started = time.perf_counter()
        events = [json.loads(e.state) for e in recorder.select_events(stream)]
        load.append(time.perf_counter() - started)
        assert len(events) == SMALL_EVENTS
    return {"stream_load_p50_ms": statistics.median(load) * 1000, "peak_rss_mb": peak_rss_mb()}


def es_full_read(path: str) -> dict[str, Any]:
    recorder = es_recorder(path)
    started = time.perf_counter()
    events, position = 0, 1
    while True:
        page = recorder.select_notifications(position, 100_000)
        if not page:
            break
        events += len(page)
        position = page[-1].id + 1
    seconds = time.perf_counter() - started
    return {"events": events, "read_events_per_s": events / seconds, "peak_rss_mb": peak_rss_mb()}


# -- orchestration ---------------------------------------------------------------------------------


def _child(conn: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    conn.send(fn(*args))
    conn.close()


def isolated(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh process (own peak memory) and return its result."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_child, args=(child, fn, args))
    process.start()
    result: dict[str, Any] = parent.recv()
    process.join()
    return result


def run(events: int = 10_000_000, es_events: int = 200_000, repeats: int = 3) -> dict[str, Any]:
    """Every store figure, Settler and eventsourcing side by side (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="settler-bench-"))
    results: dict[str, Any] = {"events": events}
    try:
        batches = max(1, events // BATCH)
        big = work / "big"
        built = isolated(build_log, str(big), batches, 1.0)
        small_streams = built.pop("small_streams")
        results["columnar_append"] = built
        small = work / "small"
        small_built = isolated(build_log, str(small), 1, 0.1)
        small_small_streams = small_built.pop("small_streams")
        loads_big = [isolated(stream_loads, str(big), small_streams) for _ in range(repeats)]
        loads_small = [isolated(stream_loads, str(small), small_small_streams) for _ in range(repeats)]
        results["stream_load_10M"] = _median_dict(loads_big)
        results["stream_load_100k"] = _median_dict(loads_small)
        results["full_read"] = _median_dict([isolated(full_read, str(big)) for _ in range(repeats)])
        results["small_commits"] = _median_dict([isolated(small_commits, str(big)) for _ in range(repeats)])
        envelope_dir = work / "envelopes"
        results["envelope_append"] = isolated(envelope_append, str(envelope_dir))
        results["misfit_publish"] = isolated(misfit_publish, str(work / "misfits"))
        # Same work at a size the library finishes in minutes; ratios compare like with like.
        es_scale = es_events / BATCH
        cmp_dir = work / "cmp"
        ours = isolated(build_log, str(cmp_dir / "settler"), 1, es_scale)
        ours_streams = ours.pop("small_streams")
        theirs = isolated(es_build, str(cmp_dir / "es.sqlite"), 1, es_scale)
        theirs_streams = theirs.pop("small_streams")
        comparison = {
            "events": ours["events"],
            "append_events_per_s": {"settler": ours["events_per_s"], "eventsourcing": theirs["events_per_s"]},
            "small_commits_per_s": {
                "settler": isolated(small_commits, str(cmp_dir / "settler"))["commits_per_s"],
                "eventsourcing": isolated(es_small_commits, str(cmp_dir / "es.sqlite"))["commits_per_s"],
            },
            "stream_load_p50_ms": {
                "settler": isolated(stream_loads, str(cmp_dir / "settler"), ours_streams)[
                    "stream_load_p50_ms"
                ],
                "eventsourcing": isolated(es_stream_loads, str(cmp_dir / "es.sqlite"), theirs_streams)[
                    "stream_load_p50_ms"
                ],
            },
            "full_read_events_per_s": {
                "settler": isolated(full_read, str(cmp_dir / "settler"))["read_events_per_s"],
                "eventsourcing": isolated(es_full_read, str(cmp_dir / "es.sqlite"))["read_events_per_s"],
            },
        }
        results["vs_eventsourcing"] = comparison
        results["disk"] = {"log_bytes": sum(f.stat().st_size for f in big.rglob("*") if f.is_file())}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _median_dict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"repeats": len(runs)}


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    print(json.dumps(run(size, es_events=min(200_000, size)), indent=2))
    del os
