"""Each job, tenant and day counts once, also when two processes start the same days at the same
moment: the check of live runs and the start's append are one step (application/start_lock.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from settler_pipeline.application.start_lock import StartLocks
from settler_pipeline.errors import StateError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "workers" / "racing_start.py"
DAY = date(2026, 11, 3)


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    return {**env, "SETTLER_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=300, start=DAY, days=2, seed=5)
    data = tmp_path / "data"
    with Settler(data) as app:
        app.access.create_tenant("acme", admin=app.user)
    return data, spec


def _starts(data: Path) -> list[str]:
    with Settler(data) as app:
        events = app.events(event_types=["ReconciliationStarted"])
        return sorted(events["aggregate_id"].to_list())


def test_two_processes_starting_the_same_days_at_once_reconcile_them_once(tmp_path: Path) -> None:
    data, spec = _setup(tmp_path)
    args = [sys.executable, str(WORKER), "reconcile", str(spec), "--from", DAY.isoformat(), "--json"]
    procs = [
        subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(data), cwd=ROOT
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    codes = sorted(proc.returncode for proc in procs)
    assert codes == [0, 1], results
    refused = next(err for proc, (_, err) in zip(procs, results, strict=True) if proc.returncode == 1)
    assert "already reconciled" in json.loads(refused.strip().splitlines()[-1])["error"]
    # Both processes checked; only one start is in the log.
    assert all("CHECKED" in out for out, _ in results)
    assert len(_starts(data)) == 1


def test_a_start_killed_while_holding_the_lock_does_not_block_the_next(tmp_path: Path) -> None:
    locks = StartLocks(tmp_path / "locks", wait_seconds=20)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from settler_pipeline.application.start_lock import StartLocks\n"
            "with StartLocks(Path(sys.argv[1])).hold('t', 'job'):\n"
            "    print('HELD', flush=True); time.sleep(600)",
            str(locks.directory),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
    with pytest.raises(StateError), StartLocks(locks.directory, wait_seconds=0.2).hold("t", "job"):
        pass  # held by the live process
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    began = time.monotonic()
    with locks.hold("t", "job"):
        pass
    assert time.monotonic() - began < 5


def test_a_lock_held_too_long_gives_a_clear_error_and_other_jobs_never_wait(tmp_path: Path) -> None:
    locks = StartLocks(tmp_path / "locks", wait_seconds=0.2)
    with locks.hold("t", "job"):
        # flock belongs to an open file description: a second open contends like another process
        with (
            pytest.raises(StateError, match=r"another start of job 'job'.*in progress") as raised,
            locks.hold("t", "job"),
        ):
            pass
        assert raised.value.hint
        with locks.hold("t", "other-job"), locks.hold("u", "job"):
            pass
    assert {p.name for p in locks.directory.iterdir()} == {
        locks.path(t, j).name for t, j in [("t", "job"), ("t", "other-job"), ("u", "job")]
    }


def test_the_same_command_sent_twice_at_once_returns_one_run_to_both(tmp_path: Path) -> None:
    """Two processes send the same start with the same idempotency key at the same moment (a scheduler
    retrying a command it thinks was lost): one start is in the log, and both answer with that run."""
    data, spec = _setup(tmp_path)
    args = [sys.executable, str(WORKER), "reconcile", str(spec), "--from", DAY.isoformat()]
    args += ["--idempotency-key", "nightly-2026-11-03", "--json"]
    procs = [
        subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(data), cwd=ROOT
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    answers = [json.loads(out[out.index("{") :]) for out, _ in results]
    (started,) = _starts(data)
    assert [a["reconciliation_id"] for a in answers] == [started, started], answers
    assert sorted(bool(a.get("repeated_command")) for a in answers) == [False, True], answers
