"""A whole reconciliation run at scale: read both CSV exports, every matcher pass, and the event
append, as a user's `settler reconcile` does.

The inputs are generated once per size in a subprocess of their own (`settler sample`'s generator),
then each repeat runs in a fresh subprocess into a fresh data directory, so the peak RSS reported
(``ru_maxrss``) is the run's own: interpreter, libraries, the open log and the run, nothing of the
generator. With ``BENCH_RUN_INPUTS`` set to a folder, each size's inputs are generated once into
``<folder>/<size>`` and reused by later benchmark runs (a 10M input takes minutes to generate); the
folder is never in the repository. Each child runs with the ``max_memory`` setting at 80% of the
memory available when it starts, so a size that does not fit is refused by the run's memory check
(a recorded failure) instead of pushing the shared machine into swap or the OOM killer.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
START, END = date(2026, 11, 1), date(2026, 11, 7)


def _child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_run", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-3:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def generate(size: int, folder: Path) -> dict[str, Any]:
    """Write the sample job of ``size`` source records (7 days, every hard case) into ``folder``."""
    from settler_pipeline.sample_job import write_sample_job

    started = time.perf_counter()
    spec, sample = write_sample_job(folder, records=size, start=START, days=7, seed=1)
    return {
        "spec": str(spec),
        "source_records": sample.source.height,
        "target_records": sample.target.height,
        "input_bytes": sum(p.stat().st_size for p in folder.glob("*.csv")),
        "generate_s": round(time.perf_counter() - started, 1),
    }


def once(spec: Path, data_dir: Path) -> dict[str, Any]:
    """One whole run of ``spec`` into a fresh ``data_dir``, in this process: wall and CPU time, what it
    appended, its final status (with the error of a failed run) and this process's peak RSS."""
    from settler_pipeline.session import Settler

    with Settler(data_dir, user="bench") as app:
        app.access.create_tenant("bench", admin="bench")
        rss_start = psutil.Process().memory_info().rss
        load_before = os.getloadavg()[0]
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        outcome = app.reconcile(spec, start=START, end=END)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    summary = outcome.summary or {}
    return {
        "status": outcome.status,
        "error": (outcome.error or {}).get("message"),
        "wall_s": round(wall, 3),
        "cpu_s": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 2),
        "fetch_and_match_ms": summary.get("duration_ms"),
        "events_appended": outcome.events_appended,
        "match_rate": summary.get("match_rate"),
        "rss_at_start_mb": round(rss_start / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def measure(size: int, repeats: int = 3) -> dict[str, Any]:
    """Generate ``size`` source records once (its own process, not timed), then ``repeats`` whole
    runs, each in a fresh process and data directory; medians of wall and CPU time, the highest peak."""
    work = Path(tempfile.mkdtemp(prefix="settler-run-"))
    try:
        inputs = _inputs(size, work)
        if "error" in inputs:
            return {"size": size, "skipped": f"generating failed: {inputs['error']}"}
        runs = []
        for attempt in range(repeats):
            cap = int(0.8 * psutil.virtual_memory().available)
            env = {**os.environ, "SETTLER_MAX_MEMORY": str(cap)}
            runs.append(_child("--once", inputs["spec"], str(work / f"data{attempt}"), env=env))
            shutil.rmtree(work / f"data{attempt}", ignore_errors=True)
            if runs[-1].get("status") != "completed":
                break
        done = [r for r in runs if r.get("status") == "completed"]
        result: dict[str, Any] = {"size": size, **{k: v for k, v in inputs.items() if k != "spec"}}
        if len(done) < len(runs) or not done:
            failed = runs[-1]
            return {**result, "skipped": failed.get("error") or failed.get("status"), "runs": runs}
        peak = max(r["peak_rss_mb"] for r in done)
        return {
            **result,
            "run_wall_s": statistics.median(r["wall_s"] for r in done),
            "runs_s": [r["wall_s"] for r in done],
            "cpu_s": statistics.median(r["cpu_s"] for r in done),
            "repeats": len(done),
            "fetch_and_match_ms": statistics.median(r["fetch_and_match_ms"] for r in done),
            "events_appended": done[-1]["events_appended"],
            "match_rate": done[-1]["match_rate"],
            "rss_at_start_mb": done[-1]["rss_at_start_mb"],
            "peak_rss_mb": peak,
            "peak_over_input": round(peak * 2**20 / inputs["input_bytes"], 2),
            "load_average": [r["load_average"] for r in done],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _inputs(size: int, work: Path) -> dict[str, Any]:
    """Generate ``size``'s inputs in a child process, or reuse those under ``BENCH_RUN_INPUTS``."""
    shared = os.environ.get("BENCH_RUN_INPUTS")
    folder = Path(shared) / str(size) if shared else work / "inputs"
    made = folder / "inputs.json"
    if shared and made.is_file():
        reused: dict[str, Any] = json.loads(made.read_text())
        return reused
    inputs = _child("--generate", str(size), str(folder))
    if shared and "error" not in inputs:
        made.write_text(json.dumps(inputs))
    return inputs


def run(sizes: tuple[int, ...] = (1_000_000,)) -> list[dict[str, Any]]:
    """One result per size: three runs up to 1M source records, one above (a 10M run takes minutes)."""
    return [measure(size, repeats=3 if size <= 1_000_000 else 1) for size in sizes]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--generate":
        print(json.dumps(generate(int(sys.argv[2]), Path(sys.argv[3]))))
    elif len(sys.argv) == 4 and sys.argv[1] == "--once":
        print(json.dumps(once(Path(sys.argv[2]), Path(sys.argv[3]))))
    else:
        print(json.dumps(run(tuple(int(s) for s in sys.argv[1:]) or (100_000,)), indent=2))
