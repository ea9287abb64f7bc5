"""A whole reconciliation run at scale: read both CSV exports, every matcher pass, and the event
append (the number the matcher target is about), each size in a fresh subprocess for its peak RSS."""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.isolation import measure_in_subprocess

ROOT = Path(__file__).resolve().parent.parent


def measure(size: int, repeats: int = 3) -> dict[str, Any]:
    """Generate ``size`` source records once (not timed), then time ``repeats`` runs end to end, each
    into a fresh data directory; report the median."""
    import statistics

    from settler_pipeline.sample_job import write_sample_job
    from settler_pipeline.session import Settler

    work = Path(tempfile.mkdtemp(prefix="settler-run-"))
    try:
        spec, sample = write_sample_job(
            work / "inputs", records=size, start=date(2026, 11, 1), days=7, seed=1
        )
        walls, outcome, events = [], None, 0
        for attempt in range(repeats):
            with Settler(work / f"data{attempt}", user="bench") as app:
                app.access.create_tenant("bench", admin="bench")
                started = time.perf_counter()
                outcome = app.reconcile(spec, start=date(2026, 11, 1), end=date(2026, 11, 7))
                walls.append(time.perf_counter() - started)
                events = app.store.head_position
            shutil.rmtree(work / f"data{attempt}", ignore_errors=True)
        summary = (outcome.summary if outcome else None) or {}
        return {
            "size": size,
            "source_records": sample.source.height,
            "target_records": sample.target.height,
            "run_wall_s": round(statistics.median(walls), 3),
            "runs_s": [round(w, 3) for w in walls],
            "repeats": repeats,
            "fetch_and_match_ms": summary.get("duration_ms"),
            "events_appended": events,
            "match_rate": summary.get("match_rate"),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> list[dict[str, Any]]:
    """One result per size, each in its own process."""
    return [measure_in_subprocess("benchmarks.bench_run", size) for size in sizes]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--single":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        print(json.dumps(run(tuple(int(s) for s in sys.argv[1:]) or (100_000,)), indent=2))
