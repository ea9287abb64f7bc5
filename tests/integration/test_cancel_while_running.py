"""A run cancelled from another process while `settler reconcile` executes it: the reconcile stops
writing, and its exit code and message say the run was cancelled, so a script or scheduler never takes
the cancelled run for a reconciled day."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "workers" / "stalled_run.py"
SETTLER = str(Path(sys.executable).parent / "settler")
DAY = date(2026, 11, 3)


def test_a_reconcile_whose_run_is_cancelled_meanwhile_exits_saying_so(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=300, start=DAY, days=2, seed=11)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
    go_on = tmp_path / "go-on"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    env |= {"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia", "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen(
        [sys.executable, str(WORKER), "reconcile", str(spec), "--from", DAY.isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env | {"STALL_UNTIL": str(go_on)},
        cwd=ROOT,
    )
    assert run.stdout is not None
    assert run.stdout.readline().strip() == "FETCHING"
    with Settler(data, user="olivia") as app:
        (run_id,) = app.events(event_types=["ReconciliationStarted"])["aggregate_id"].to_list()
    cancel = subprocess.run(
        [SETTLER, "cancel", run_id[:8], "--reason", "wrong day", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout)["status"] == "cancelled"
    go_on.touch()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, out + err
    assert "cancelled" in out and f"settler retry {run_id}" in err, out + err
    with Settler(data, user="olivia") as app:
        state = app.state(run_id)
        assert state.status == "cancelled" and state.counts.matched == 0
