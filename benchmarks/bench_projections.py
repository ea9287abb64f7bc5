"""Benchmark of the read models and snapshots over a realistic event log.

``run(events=10_000_000)`` generates a log of about ``events`` events (runs of ~1,000 events: started,
two fetches, ~900 auto matches, proposals, unmatched records, duplicates, quarantined rows, a finishing
event and a few review decisions; some runs fail and are retried, some are cancelled), appended with
``EventStore.append_frame`` in batches of 1M, then measures:

* a full read of every event with four payload fields, from the typed columns and (the anchor) from
  the JSON decoded by DuckDB,
* full rebuild of every read model (events/s, peak RSS of the process doing it),
* ``SELECT count(*) FROM reconciliation_matches`` as ``settler sql`` runs it,
* an incremental update after 10k more events (time, and ratio to the full rebuild), published first
  as a run's command publishes its events when it ends (that publish timed apart),
* the bulk snapshot build over the whole log,
* loading one aggregate through its snapshot (p50 of 20 loads).

Each measurement that changes files runs in a fresh subprocess so its peak RSS is its own. Prints JSON.
Usage: ``python -m benchmarks.bench_projections --events 1000000 [--data-dir DIR] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.store.event_store import PROJECTION_COLUMNS, EventStore
from settler_pipeline.store.payloads import typed_from_json

BATCH_EVENTS = 1_000_000
EVENTS_PER_RUN = 870  # on average: a completed run has ~900 matches + ~80 other events
TENANTS = 20
EPOCH = datetime(2026, 9, 1, tzinfo=UTC)
SPAN = timedelta(days=60)  # the runs' start times are spread over this period

_TS = pl.Datetime("us", "UTC")


def _uuid(kind: int, n: pl.Expr) -> pl.Expr:
    """A valid UUID string per row from an integer column (``kind`` separates id families)."""
    # Decimal digits are hex digits: zero-padded to 12 they make a valid last group.
    return pl.concat_str(pl.lit(f"0192f0c4-{kind:04x}-7000-8000-"), n.cast(pl.String).str.pad_start(12, "0"))


def _runs(first: int, count: int, total_runs: int, rng: np.random.Generator) -> pl.DataFrame:
    """One row per run: ids, outcome (completed / retried / failed / cancelled) and its record counts."""
    outcome = rng.choice(
        ["completed", "retried", "failed", "cancelled"], size=count, p=[0.85, 0.05, 0.05, 0.05]
    )
    runs = pl.DataFrame(
        {
            "run": np.arange(first, first + count, dtype=np.int64),
            "outcome": outcome,
            "tenant": rng.integers(0, TENANTS, size=count),
            "n_matched": rng.integers(850, 950, size=count),
            "n_proposed": rng.integers(5, 15, size=count),
            "n_unmatched": rng.integers(20, 60, size=count),
            "n_dup": rng.integers(0, 6, size=count),
            "n_quar": rng.integers(0, 5, size=count),
        }
    )
    step = SPAN / max(total_runs, 1)
    return runs.with_columns(
        _uuid(1, pl.col("run")).alias("aggregate_id"),
        _uuid(2, pl.col("run")).alias("correlation_id"),
        _uuid(3, pl.col("tenant")).alias("tenant_id"),
        pl.lit(EPOCH).cast(_TS).alias("_epoch"),
    ).with_columns(
        (pl.col("_epoch") + pl.duration(microseconds=pl.col("run") * int(step.total_seconds() * 1e6))).alias(
            "started_at"
        )
    )


def _expand(runs: pl.DataFrame, count: str | int) -> pl.DataFrame:
    """One row per (run, k) for k in range(count)."""
    n = pl.col(count) if isinstance(count, str) else pl.lit(count)
    return runs.with_columns(pl.int_ranges(0, n).alias("k")).explode("k").drop_nulls("k")


def _events(frame: pl.DataFrame, event_type: str, seq: pl.Expr, data: pl.Expr) -> pl.DataFrame:
    return frame.select(
        pl.col("run"),
        seq.cast(pl.Int64).alias("seq"),
        pl.lit(event_type).alias("event_type"),
        data.struct.json_encode().alias("data"),
        pl.col("aggregate_id"),
        pl.col("tenant_id"),
        pl.col("correlation_id"),
        (pl.col("started_at") + pl.duration(milliseconds=seq)).alias("timestamp"),
    )


def _attempt_events(runs: pl.DataFrame, attempt: int, base: int) -> list[pl.DataFrame]:
    """The events of one complete attempt of ``runs`` starting at sequence number ``base``."""
    att = pl.lit(attempt)
    parts = []
    for side, event_type, offset in (
        ("source", e.SOURCE_RECORDS_FETCHED, 1),
        ("target", e.TARGET_RECORDS_FETCHED, 2),
    ):
        parts.append(
            _events(
                runs,
                event_type,
                pl.lit(base + offset),
                pl.struct(
                    att.alias("attempt"),
                    pl.lit("csv").alias("adapter"),
                    (pl.col("n_matched") + pl.col("n_unmatched") // 2).alias("count"),
                    pl.col("n_quar").alias("quarantined_count"),
                    pl.lit(3).alias("out_of_window_count"),
                    (pl.col("n_matched") + pl.col("n_unmatched") // 2 + pl.col("n_quar") + 3).alias(
                        "total_rows"
                    ),
                    pl.lit(40).alias("fetch_duration_ms"),
                ),
            )
        )
        quarantined = _expand(runs, "n_quar")
        parts.append(
            _events(
                quarantined,
                e.RECORD_QUARANTINED,
                pl.lit(base + 3) + pl.col("k") * 2 + (offset - 1),
                pl.struct(
                    att.alias("attempt"),
                    pl.lit(side).alias("side"),
                    (pl.col("k") + 2).alias("line_number"),
                    pl.when(pl.col("k") % 2 == 0)
                    .then(pl.lit("bad_amount: not a number"))
                    .otherwise(pl.lit("missing_field: currency"))
                    .alias("reason"),
                    pl.lit("x,y,z").alias("raw"),
                ),
            )
        )
    body = base + 20
    matches = _expand(runs, "n_matched")
    key = pl.col("run") * 10_000 + pl.col("k")
    parts.append(
        _events(
            matches,
            e.RECORD_MATCHED,
            pl.lit(body) + pl.col("k"),
            pl.struct(
                att.alias("attempt"),
                _uuid(4 + attempt, key).alias("match_id"),
                pl.lit("exact_reference").alias("rule"),
                pl.lit("one_to_one").alias("match_type"),
                pl.concat_list(pl.format("ch_{}", key)).alias("source_ids"),
                pl.concat_list(pl.format("tx_{}", key)).alias("target_ids"),
                (pl.col("k") * 137 % 100_000 + 100).alias("amount"),
                (pl.col("k") * 137 % 100_000 + 100).alias("target_amount"),
                pl.lit(0).alias("amount_difference"),
                pl.lit("EUR").alias("currency"),
                pl.lit(1.0).alias("confidence"),
                pl.lit(["reference", "amount"]).alias("matched_fields"),
                pl.lit(0).alias("date_difference_days"),
            ),
        )
    )
    body += 1_000
    proposed = _expand(runs, "n_proposed")
    parts.append(
        _events(
            proposed,
            e.MATCH_PROPOSED,
            pl.lit(body) + pl.col("k"),
            pl.struct(
                att.alias("attempt"),
                _uuid(6 + attempt, key).alias("match_id"),
                pl.lit("fuzzy_text").alias("rule"),
                pl.lit("one_to_one").alias("match_type"),
                pl.concat_list(pl.format("pch_{}", key)).alias("source_ids"),
                pl.concat_list(pl.format("ptx_{}", key)).alias("target_ids"),
                (pl.col("k") * 31 + 500).alias("amount"),
                (pl.col("k") * 31 + 495).alias("target_amount"),
                pl.lit(-5).alias("amount_difference"),
                pl.lit("EUR").alias("currency"),
                pl.lit(0.82).alias("confidence"),
                pl.lit(["description"]).alias("matched_fields"),
                pl.lit(1).alias("date_difference_days"),
            ),
        )
    )
    body += 100
    unmatched = _expand(runs, "n_unmatched")
    record_side = pl.when(pl.col("k") % 2 == 0).then(pl.lit("source")).otherwise(pl.lit("target"))
    parts.append(
        _events(
            unmatched,
            e.RECORD_UNMATCHED,
            pl.lit(body) + pl.col("k"),
            pl.struct(
                att.alias("attempt"),
                record_side.alias("side"),
                pl.format("u_{}", key).alias("record_id"),
                (pl.col("k") + 100).alias("line_number"),
                (pl.col("k") * 71 + 1_000).alias("amount"),
                pl.lit("EUR").alias("currency"),
                pl.lit("2026-10-01T00:00:00.000000Z").alias("occurred_at"),
                pl.when(pl.col("k") % 5 == 0)
                .then(pl.lit("amount_mismatch"))
                .when(pl.col("k") % 7 == 0)
                .then(pl.lit("ambiguous"))
                .otherwise(
                    pl.when(pl.col("k") % 2 == 0)
                    .then(pl.lit("missing_settlement"))
                    .otherwise(pl.lit("missing_transaction"))
                )
                .alias("reason"),
                pl.lit([], dtype=pl.List(pl.String)).alias("candidate_ids"),
            ),
        )
    )
    body += 100
    dups = _expand(runs, "n_dup")
    parts.append(
        _events(
            dups,
            e.DUPLICATE_DETECTED,
            pl.lit(body) + pl.col("k"),
            pl.struct(
                att.alias("attempt"),
                pl.lit("source").alias("side"),
                pl.format("d_{}", key).alias("record_id"),
                (pl.col("k") + 5_000).alias("line_number"),
                pl.lit(1).alias("first_line_number"),
            ),
        )
    )
    body += 100
    summary = pl.struct(
        (pl.col("n_matched") + pl.col("n_unmatched") // 2 + pl.col("n_quar")).alias("total_source_records"),
        (pl.col("n_matched") + pl.col("n_unmatched") // 2 + pl.col("n_quar")).alias("total_target_records"),
        pl.col("n_matched").alias("matched_count"),
        pl.col("n_matched").alias("matched_source_records"),
        pl.col("n_matched").alias("matched_target_records"),
        pl.col("n_proposed").alias("proposed_count"),
        (pl.col("n_unmatched") // 2).alias("unmatched_source_count"),
        (pl.col("n_unmatched") - pl.col("n_unmatched") // 2).alias("unmatched_target_count"),
        pl.col("n_dup").alias("duplicate_count"),
        (pl.col("n_quar") * 2).alias("quarantined_count"),
        (pl.col("n_quar") * 2).alias("errors_count"),
        pl.lit(2_500).alias("duration_ms"),
        (pl.col("n_matched") / (pl.col("n_matched") + pl.col("n_proposed") + pl.col("n_unmatched") // 2))
        .round(6)
        .alias("match_rate"),
    )
    parts.append(
        _events(
            runs,
            e.RECONCILIATION_COMPLETED,
            pl.lit(body),
            pl.struct(att.alias("attempt"), summary.alias("summary")),
        )
    )
    return parts


def _started(runs: pl.DataFrame) -> pl.DataFrame:
    return _events(
        runs,
        e.RECONCILIATION_STARTED,
        pl.lit(0),
        pl.struct(
            pl.format("job-{}", pl.col("tenant")).alias("job_id"),
            pl.lit("csv").alias("source_adapter"),
            pl.lit("csv").alias("target_adapter"),
            pl.struct(pl.lit("2026-10-01").alias("start"), pl.lit("2026-10-31").alias("end")).alias(
                "date_range"
            ),
            pl.lit("scheduler").alias("initiated_by"),
            pl.lit(1).alias("attempt"),
            pl.lit("fp").alias("spec_fingerprint"),
        ),
    )


def _failed(runs: pl.DataFrame, seq: int, step: str) -> pl.DataFrame:
    return _events(
        runs,
        e.RECONCILIATION_FAILED,
        pl.lit(seq),
        pl.struct(
            pl.lit(1).alias("attempt"),
            pl.struct(
                pl.lit("NotFoundError").alias("type"),
                pl.lit("source file missing: export.csv").alias("message"),
            ).alias("error"),
            pl.lit(step).alias("step"),
            pl.lit(True).alias("retryable"),
        ),
    )


def _reviews(runs: pl.DataFrame) -> pl.DataFrame:
    """A few review decisions on completed runs: confirm proposal 0, reject proposal 1, dismiss one
    unmatched record and match two others by hand."""
    done = runs.filter(pl.col("outcome").is_in(["completed", "retried"])).with_columns(
        pl.when(pl.col("outcome") == "retried").then(2).otherwise(1).alias("attempt"),
        (pl.col("run") * 10_000).alias("key"),
        (pl.col("started_at") + pl.duration(days=1)).alias("started_at"),
    )

    def proposal(k: int) -> pl.Expr:
        key = pl.col("key") + k
        return pl.when(pl.col("attempt") == 2).then(_uuid(8, key)).otherwise(_uuid(7, key))

    return pl.concat(
        [
            _events(
                done,
                e.MATCH_CONFIRMED,
                pl.lit(5_000),
                pl.struct(proposal(0).alias("match_id"), pl.lit("ann").alias("confirmed_by")),
            ),
            _events(
                done,
                e.MATCH_REJECTED,
                pl.lit(5_001),
                pl.struct(
                    proposal(1).alias("match_id"),
                    pl.lit("wrong payer").alias("reason"),
                    pl.lit("ann").alias("rejected_by"),
                ),
            ),
            _events(
                done,
                e.EXCEPTION_DISMISSED,
                pl.lit(5_002),
                pl.struct(
                    pl.format("unmatched:source:u_{}", pl.col("key")).alias("exception_id"),
                    pl.lit("bank fee").alias("reason"),
                    pl.lit("ann").alias("dismissed_by"),
                ),
            ),
            _events(
                done,
                e.RECORDS_MANUALLY_MATCHED,
                pl.lit(5_003),
                pl.struct(
                    _uuid(9, pl.col("run")).alias("match_id"),
                    pl.concat_list(pl.format("u_{}", pl.col("key") + 2)).alias("source_ids"),
                    pl.concat_list(pl.format("u_{}", pl.col("key") + 3)).alias("target_ids"),
                    pl.lit("split payment").alias("note"),
                    pl.lit("ann").alias("matched_by"),
                ),
            ),
        ]
    )


def run_events_frame(runs: pl.DataFrame) -> pl.DataFrame:
    """Every event of ``runs`` (without their reviews), in log order (run by run)."""
    parts = [_started(runs)]
    completed = runs.filter(pl.col("outcome") == "completed")
    parts += _attempt_events(completed, 1, 1)
    retried = runs.filter(pl.col("outcome") == "retried")
    parts.append(_failed(retried, 1, "fetch_source"))
    parts.append(
        _events(
            retried,
            e.RECONCILIATION_RETRIED,
            pl.lit(2),
            pl.struct(pl.lit(2).alias("attempt"), pl.lit("ops").alias("retried_by")),
        )
    )
    parts += _attempt_events(retried, 2, 3)
    parts.append(_failed(runs.filter(pl.col("outcome") == "failed"), 1, "fetch_target"))
    cancelled = runs.filter(pl.col("outcome") == "cancelled")
    parts.append(
        _events(
            cancelled,
            e.RECONCILIATION_CANCELLED,
            pl.lit(1),
            pl.struct(
                pl.lit(1).alias("attempt"),
                pl.lit("wrong range").alias("reason"),
                pl.lit("ops").alias("cancelled_by"),
            ),
        )
    )
    return pl.concat(parts).sort("run", "seq")


def _to_append(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns of a columnar append, with the payload also as typed columns (as a run writes it)."""
    return typed_from_json(
        frame.select(
            "aggregate_id",
            pl.lit(e.AGGREGATE_TYPE).alias("aggregate_type"),
            "event_type",
            pl.lit(1, pl.Int32).alias("event_version"),
            "data",
            "tenant_id",
            "correlation_id",
            pl.col("timestamp").cast(_TS),
        )
    )


def generate(
    store: EventStore, events: int, *, seed: int = 7, first_run: int = 0
) -> tuple[int, pl.DataFrame]:
    """Append exactly ``events`` events of runs numbered from ``first_run`` in batches of about 1M (a
    batch's review decisions go with the next batch; the last run may be cut short, i.e. still running).
    Returns the number of runs and the review decisions on the last batch's runs, not yet appended."""
    rng = np.random.default_rng(seed + first_run)
    total_runs = max(1, events // EVENTS_PER_RUN + 1)
    runs_per_batch = max(1, BATCH_EVENTS // EVENTS_PER_RUN)
    pending: pl.DataFrame | None = None
    appended = 0
    run = 0
    while appended < events:
        count = min(runs_per_batch, (events - appended) // EVENTS_PER_RUN + 2)
        runs = _runs(first_run + run, count, first_run + total_runs, rng)
        frame = run_events_frame(runs)
        if pending is not None:
            frame = pl.concat([pending, frame])
        pending = _reviews(runs).sort("run", "seq")
        frame = frame.head(events - appended)
        store.append_frame(_to_append(frame))
        appended += frame.height
        run += count
    assert pending is not None
    return run, pending


def generate_increment(
    store: EventStore, events: int, *, first_run: int, reviews: pl.DataFrame, seed: int
) -> None:
    """Append ``events`` new events in one commit: new runs, plus ``reviews`` (decisions on runs of the
    existing log, so an update also rewrites the review parts of old runs)."""
    count = events // EVENTS_PER_RUN + 8  # enough runs for ``events`` even if several end early
    runs = _runs(first_run, count, first_run + count, np.random.default_rng(seed))
    fresh = run_events_frame(runs).head(events - reviews.height)
    assert fresh.height + reviews.height == events
    store.append_frame(_to_append(pl.concat([reviews, fresh])))


# -- measurements -----------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the process image, so it starts afresh
    at exec; ru_maxrss (the fallback elsewhere) would include the forking parent's memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(task: str, data_dir: str) -> dict[str, Any]:
    """Run one measurement in this (fresh) process."""
    from settler_pipeline import projections

    if task == "sql_count_matches":
        from settler_pipeline.query import scoped_sql

        # what `settler sql` runs for a user who sees every tenant (it opens no event store)
        tenants = pl.select(_uuid(3, pl.int_range(TENANTS))).to_series().to_list()
        started, cpu = time.perf_counter(), os.times()
        counted = scoped_sql(data_dir, "SELECT count(*) AS n FROM reconciliation_matches", tenants)
        seconds, after = time.perf_counter() - started, os.times()
        return {
            "seconds": seconds,
            "cpu_seconds": (after.user - cpu.user) + (after.system - cpu.system),
            "peak_rss_mb": _peak_rss_mb(),
            "head": int(counted["n"][0]),  # the rows counted
        }
    with EventStore.open(data_dir) as store:
        head = store.head_position
        started, cpu = time.perf_counter(), os.times()
        if task == "rebuild":
            projections.rebuild(store, data_dir)
        elif task == "update":
            projections.update(store, data_dir)
        elif task == "snapshots":
            projections.build_snapshots(store, every=100)
        elif task in ("full_read_typed", "full_read_json"):
            # every event with four payload fields: typed columns, or the JSON decoded by DuckDB
            fields = {
                "attempt": pl.Int64(),
                "amount": pl.Int64(),
                "currency": pl.String(),
                "reason": pl.String(),
            }
            if task == "full_read_typed":
                read = store.read(payload_fields=list(fields)).select(*PROJECTION_COLUMNS, *fields).collect()
            else:
                read = store.read_fields(fields)
            assert read.height == head
        else:
            raise ValueError(task)
        seconds = time.perf_counter() - started
        after = os.times()
    # CPU seconds (user + system, all threads) tell how much of the wall time was work on a shared machine.
    cpu_seconds = (after.user - cpu.user) + (after.system - cpu.system)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": _peak_rss_mb(), "head": head}


ANCHOR_ENV = "BENCH_PROJECTIONS_ANCHOR"
"""A source tree of earlier code (e.g. ``git archive <commit> | tar -x -C DIR``) whose rebuild and update
are measured side by side with the current code's on the same log; its label in
``BENCH_PROJECTIONS_ANCHOR_LABEL``."""


def _in_subprocess(task: str, data_dir: Path, tree: Path | None = None) -> dict[str, Any]:
    """Run ``task`` in a fresh process, with the code of ``tree`` (the anchor) or the current code."""
    started = time.perf_counter()
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_projections", "--child", task, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree or Path(__file__).resolve().parent.parent,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started  # with interpreter start and imports
    return result


def run(events: int = 10_000_000, *, data_dir: str | None = None, repeat: int = 3) -> list[dict[str, Any]]:
    """Generate a log of ``events`` events and measure the read models and snapshots on it; returns one
    dict per measurement (and prints them as JSON)."""
    owned = data_dir is None
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="settler-bench-"))
    results: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        with EventStore.open(root) as store:
            runs, reviews = generate(store, events)
            head = store.head_position
            generated = time.perf_counter() - started
            # Every command that appends ends by publishing (Settler._published), so read models find
            # the log published; the generator appends below that layer, so it publishes here, timed
            # apart (as the updates' publishes are): no rebuild's timed span may include a publish.
            # (Its bulk appends leave no tail today: 0.0 s. The first rebuild is slower for another
            # reason, see the notes: it reads every file once for the currencies' exponents.)
            publishing = time.perf_counter()
            store.publish()
            published = time.perf_counter() - publishing
        results.append(
            {
                "name": "generate_log",
                "events": head,
                "runs": runs,
                "seconds": round(generated, 2),
                "publish_seconds": round(published, 2),
            }
        )

        anchor = Path(os.environ[ANCHOR_ENV]) if os.environ.get(ANCHOR_ENV) else None
        label = os.environ.get(f"{ANCHOR_ENV}_LABEL", str(anchor))
        # From scratch every time (no cache of any kind is kept between rebuilds); with an anchor,
        # its rebuilds alternate with the current code's, so both see the same machine.
        rebuilds, anchored = [], []
        for _ in range(repeat):
            if anchor is not None:
                anchored.append(_in_subprocess("rebuild", root, anchor))
            rebuilds.append(_in_subprocess("rebuild", root))
        rebuild_s = statistics.median(r["seconds"] for r in rebuilds)
        results.append(_rebuild_result("full_rebuild_all_read_models", head, rebuilds))
        if anchored:
            results.append({**_rebuild_result("full_rebuild_anchor", head, anchored), "anchor": label})

        reads = {
            task: [_in_subprocess(task, root) for _ in range(repeat)]
            for task in ("full_read_typed", "full_read_json")
        }
        for task, measured in reads.items():
            seconds = statistics.median(r["seconds"] for r in measured)
            results.append(
                {
                    "name": task,
                    "events": head,
                    "seconds_median": round(seconds, 3),
                    "events_per_s": round(head / seconds),
                    "peak_rss_mb": round(max(r["peak_rss_mb"] for r in measured)),
                }
            )

        counts = [_in_subprocess("sql_count_matches", root) for _ in range(repeat)]
        results.append(
            {
                "name": "sql_count_of_matches",
                "rows": counts[0]["head"],
                "seconds_median": round(statistics.median(r["seconds"] for r in counts), 3),
                "process_seconds_median": round(statistics.median(r["process_seconds"] for r in counts), 3),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in counts)),
            }
        )

        # Every update (the anchor's too) carries the decisions on as many runs, none decided before:
        # the pending decisions cover the last batch's runs (~80 at 10M), shared out evenly.
        reviewed = reviews["run"].unique().sort()
        per_update = max(1, reviewed.len() // (2 * repeat))

        def updates(tree: Path | None, first: int) -> list[dict[str, Any]]:
            measured = []
            for i in range(first, first + repeat):
                with EventStore.open(root) as store:
                    decisions = reviews.filter(
                        pl.col("run").is_in(reviewed.slice(per_update * i, per_update).implode())
                    )
                    generate_increment(
                        store, 10_000, first_run=10_000_000 + 100 * i, reviews=decisions, seed=100 + i
                    )
                    # A run's command ends by publishing its events (Settler._published), so the
                    # update that follows finds them published: the publish is the run's cost,
                    # timed here apart, and the update's timed span starts after it.
                    started, cpu = time.perf_counter(), os.times()
                    store.publish()
                    after = os.times()
                    published = {
                        "publish_seconds": time.perf_counter() - started,
                        "publish_cpu_seconds": (after.user - cpu.user) + (after.system - cpu.system),
                    }
                measured.append({**_in_subprocess("update", root, tree), **published})
            return measured

        measured_updates = updates(None, 0)
        result = _update_result("incremental_update_after_10k_events", measured_updates, rebuild_s)
        results.append({**result, "review_runs_per_update": per_update})
        if anchor is not None:
            # the anchor's own read models first (its update reads what its rebuild wrote)
            _in_subprocess("rebuild", root, anchor)
            anchor_s = statistics.median(r["seconds"] for r in anchored)
            result = _update_result("incremental_update_anchor", updates(anchor, repeat), anchor_s)
            results.append({**result, "anchor": label, "review_runs_per_update": per_update})

        snapshots = _in_subprocess("snapshots", root)
        results.append(
            {
                "name": "bulk_snapshot_build",
                "events": snapshots["head"],
                "seconds": round(snapshots["seconds"], 3),
                "cpu_seconds": round(snapshots["cpu_seconds"], 3),
                "events_per_s": round(snapshots["head"] / snapshots["seconds"]),
                "peak_rss_mb": round(snapshots["peak_rss_mb"]),
            }
        )
        results.append(_aggregate_load(root))
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


def _rebuild_result(name: str, head: int, measured: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in measured)
    return {
        "name": name,
        "events": head,
        "seconds_median": round(seconds, 3),
        "seconds_all": [round(r["seconds"], 3) for r in measured],
        "cpu_seconds_all": [round(r["cpu_seconds"], 3) for r in measured],
        "events_per_s": round(head / seconds),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in measured)),
    }


def _update_result(name: str, measured: list[dict[str, Any]], rebuild_s: float) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in measured)
    return {
        "name": name,
        "new_events": 10_000,
        "seconds_median": round(seconds, 4),
        "seconds_all": [round(r["seconds"], 4) for r in measured],
        "cpu_seconds_all": [round(r["cpu_seconds"], 4) for r in measured],
        "ratio_to_full_rebuild": round(seconds / rebuild_s, 5),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in measured)),
        # the run's publish of those events just before (not in seconds_median)
        "publish_seconds_median": round(statistics.median(r["publish_seconds"] for r in measured), 4),
        "publish_cpu_seconds_all": [round(r["publish_cpu_seconds"], 4) for r in measured],
    }


def _aggregate_load(root: Path) -> dict[str, Any]:
    """Load a big run through its snapshot (latest snapshot + events after it), p50 of 20."""
    from settler_pipeline.domain import reconciliation as agg

    with EventStore.open(root) as store:
        run_id = (
            store.read(event_types=[e.RECONCILIATION_COMPLETED])
            .select("aggregate_id")
            .collect()["aggregate_id"][0]
        )
        times = []
        for _ in range(20):
            started = time.perf_counter()
            state = agg.ReconciliationState()
            snapshot = store.get_latest_snapshot(
                run_id, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION
            )
            if snapshot is not None:
                state = agg.ReconciliationState.from_dict(snapshot.state)
            tail = store.stream_frame(run_id, e.AGGREGATE_TYPE, from_version=state.version + 1)
            state = agg.fold_frame(state, tail)
            times.append(time.perf_counter() - started)
        return {
            "name": "aggregate_load_with_snapshot",
            "events": store.head_position,
            "stream_version": state.version,
            "snapshot_version": snapshot.aggregate_version if snapshot else None,
            "p50_ms": round(statistics.median(times) * 1000, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--data-dir")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.data_dir)))
        return
    run(args.events, data_dir=args.data_dir, repeat=args.repeat)


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "2")
    main()
