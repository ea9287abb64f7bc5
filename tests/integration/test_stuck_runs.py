"""No run is left started or running: every trigger that once left a run stuck either is refused before
the run starts, becomes a row problem, or ends the run as failed or abandoned with a reason; and the
schedule's re-run (same job, tenant, day and idempotency key) then produces a completed run.

Kills and signals hit real ``settler`` processes in the middle of reading an input."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from settler_pipeline import projections
from settler_pipeline.application.lease import LeaseState
from settler_pipeline.domain.matching import blocks as blocks_module
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "workers" / "stalled_run.py"
DAY = date(2026, 11, 3)
KEY = "daily-2026-11-03"


@dataclass
class Setup:
    data: Path
    spec: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
        return {**env, "SETTLER_DATA_DIR": str(self.data), "PYTHONPATH": str(ROOT)}

    def args(self, *extra: str) -> list[str]:
        return [
            "reconcile",
            str(self.spec),
            "--from",
            DAY.isoformat(),
            "--idempotency-key",
            KEY,
            "--json",
            *extra,
        ]

    def settler(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "settler_pipeline.cli", *self.args(*extra)],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=300,
            cwd=ROOT,
        )

    def runs(self) -> list[dict[str, object]]:
        with Settler(self.data) as app:
            events = app.events(event_types=["ReconciliationStarted"])
            return [app.state(run).__dict__ for run in events["aggregate_id"].unique().to_list()]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    spec, _ = write_sample_job(tmp_path / "inputs", records=300, start=DAY, days=2, seed=11)
    data = tmp_path / "data"
    with Settler(data) as app:
        app.access.create_tenant("acme", admin=app.user)
    return Setup(data, spec)


def _edit(spec: Path, change: Callable[[dict[str, object]], None]) -> None:
    body = yaml.safe_load(spec.read_text())
    change(body)
    spec.write_text(yaml.safe_dump(body, sort_keys=False))


def _csv_row(spec: Path, side: str, **values: str) -> None:
    """Append a row to a side's CSV, copying the first row and replacing ``values``."""
    path = spec.parent / f"{side}.csv"
    lines = path.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    row = dict(zip(header, first, strict=True)) | values
    path.write_text("\n".join([*lines, ",".join(row[c] for c in header)]) + "\n")


def _stalled(setup: Setup, signum: int) -> subprocess.CompletedProcess[str]:
    """Start a reconcile whose target read stalls, send ``signum`` once it is reading, wait for the end."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *setup.args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=setup.env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "FETCHING", line + proc.stderr.read() if proc.stderr else line
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# Each trigger acts, then says what must have happened: "refused" (exit 1, no run started),
# "completed" (a row problem, quarantined) or the status the run was left in with a reason.
Trigger = Callable[[Setup], str]


def _refused_spec(change: Callable[[dict[str, object]], None], message: str) -> Trigger:
    def act(setup: Setup) -> str:
        original = setup.spec.read_text()
        _edit(setup.spec, change)
        result = setup.settler()
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert setup.runs() == []
        setup.spec.write_text(original)  # the operator fixes the spec; the schedule runs again
        return "refused"

    return act


def _row_problem(side: str, **values: str) -> Trigger:
    def act(setup: Setup) -> str:
        _csv_row(setup.spec, side, **values)
        result = setup.settler()
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        assert outcome["status"] == "completed" and outcome["summary"]["quarantined_count"] >= 1
        return "completed"

    return act


def _signal(signum: int, expected: str, exit_code: int) -> Trigger:
    def act(setup: Setup) -> str:
        result = _stalled(setup, signum)
        assert result.returncode == exit_code, result.stderr
        (run,) = setup.runs()
        if expected == "abandoned":
            # nobody has looked yet: the log still says started, but the lease has no holder
            assert run["status"] == "started"
            with Settler(setup.data) as app:
                state = app.service.reclaim(app.service.load(str(run["reconciliation_id"])), user_id=app.user)
            run = state.__dict__
        assert run["status"] == expected
        assert run["last_error"]["step"] in ("start", "fetch_target")
        assert run["last_error"]["message"]
        return expected

    return act


def _dates(setup: Setup) -> str:
    result = setup.settler("--to", "9999-12-31")
    assert result.returncode == 1 and "reaches outside" in result.stderr, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "settler_pipeline.cli", "reconcile", str(setup.spec), "--from", "0001-01-01"],
        capture_output=True,
        text=True,
        env=setup.env(),
        cwd=ROOT,
    )
    assert result.returncode == 1 and "reaches outside" in result.stderr, result.stderr
    assert setup.runs() == []
    return "refused"


TRIGGERS: dict[str, Trigger] = {
    "timezone localtime": _refused_spec(
        lambda b: b["source"].setdefault("dates", {}).update(timezone="localtime"),  # type: ignore[union-attr]
        "unknown time zone 'localtime'",
    ),
    "encoding rot13": _refused_spec(
        lambda b: b["target"].setdefault("csv", {}).update(encoding="rot13"),  # type: ignore[union-attr]
        "unknown text encoding 'rot13'",
    ),
    "quote char equals delimiter": _refused_spec(
        lambda b: b["target"].setdefault("csv", {}).update(quote_char=","),  # type: ignore[union-attr]
        "quote_char and delimiter must differ",
    ),
    "column missing": _refused_spec(
        lambda b: b["source"]["columns"].update(reference="no_such_column"),  # type: ignore[index]
        "no_such_column",
    ),
    "years 0001 to 9999": _dates,
    "full-width amount": _row_problem("source", amount="€１２.００"),
    "half-megabyte reference": _row_problem("target", Reference="R" * 500_000),
    "amount beyond the matcher's range": _row_problem("source", amount="99999999999999.99"),
    "SIGKILL": _signal(signal.SIGKILL, "abandoned", -signal.SIGKILL),
    "SIGTERM": _signal(signal.SIGTERM, "failed", 128 + signal.SIGTERM),
    "SIGINT": _signal(signal.SIGINT, "failed", 128 + signal.SIGINT),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_a_trigger_never_leaves_a_run_stuck_and_the_schedules_rerun_completes(
    setup: Setup, trigger: str
) -> None:
    ended = TRIGGERS[trigger](setup)
    assert all(run["status"] not in ("started", "running") for run in setup.runs())
    rerun = setup.settler()
    assert rerun.returncode == 0, rerun.stderr
    outcome = json.loads(rerun.stdout)
    assert outcome["status"] == "completed", outcome
    assert not outcome.get("repeated_command") or ended == "completed"
    (run,) = setup.runs()
    assert run["status"] == "completed"
    assert run["attempt"] == (1 if ended in ("refused", "completed") else 2)


def test_an_unexpected_error_after_the_start_fails_the_run_with_its_step(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("regex size limit exceeded")

    monkeypatch.setattr(blocks_module, "stage_matches", broken)
    with Settler(setup.data) as app:
        failed = app.reconcile(setup.spec, start=DAY, end=DAY, idempotency_key=KEY)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error["type"] == "RuntimeError" and failed.error["step"] == "match"
        assert "regex size limit exceeded" in failed.error["message"]
        monkeypatch.undo()
        again = app.reconcile(setup.spec, start=DAY, end=DAY, idempotency_key=KEY)
        assert (again.status, again.attempt, again.reconciliation_id) == (
            "completed",
            2,
            failed.reconciliation_id,
        )


def test_a_run_that_cannot_record_its_end_is_abandoned_by_the_next_command_not_left_running(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk refuses the results and then the failure event too: the run stays ``running`` in
    the log, and its lease says the process is gone, so the schedule's re-run is not refused."""
    with Settler(setup.data) as app:
        store_type = type(app.store)
        append = store_type.append_frame

        def full_disk(self: object, frame: Any, **kwargs: Any) -> Any:
            if "ReconciliationStarted" not in frame["event_type"].to_list():
                raise OSError(errno.ENOSPC, "No space left on device")
            return append(self, frame, **kwargs)

        monkeypatch.setattr(store_type, "append_frame", full_disk)
        with pytest.raises(OSError, match="No space left"):
            app.reconcile(setup.spec, start=DAY, end=DAY, idempotency_key=KEY)
        monkeypatch.undo()
        (stuck,) = setup.runs()
        assert stuck["status"] in ("started", "running")
        assert app.service.leases is not None
        assert app.service.leases.state(str(stuck["reconciliation_id"])) == LeaseState.EXPIRED
        again = app.reconcile(setup.spec, start=DAY, end=DAY, idempotency_key=KEY)
        assert (again.status, again.reconciliation_id) == ("completed", stuck["reconciliation_id"])
        assert app.state(again.reconciliation_id).attempt == 2


def test_a_run_whose_process_is_alive_is_not_abandoned(setup: Setup) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *setup.args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=setup.env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "FETCHING"
        again = setup.settler()
        assert again.returncode == 0 and json.loads(again.stdout)["status"] == "started"
        (run,) = setup.runs()
        assert run["status"] == "started"
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def test_a_dead_run_of_the_same_days_is_abandoned_by_the_next_start_instead_of_blocking_it(
    setup: Setup,
) -> None:
    killed = _stalled(setup, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    (dead,) = setup.runs()
    # the killed process could not remove its work folder (spilled inputs, inside the data directory)
    left = list((setup.data / "work").glob("run-*"))
    assert len(left) == 1, left
    other = subprocess.run(
        [
            sys.executable,
            "-m",
            "settler_pipeline.cli",
            "reconcile",
            str(setup.spec),
            "--from",
            DAY.isoformat(),
        ],
        capture_output=True,
        text=True,
        env=setup.env(),
        timeout=300,
        cwd=ROOT,
    )
    assert other.returncode == 0, other.stderr  # no --supersede needed: the dead run no longer counts
    assert not left[0].exists(), "the next run removes a dead process's work folder"
    assert list((setup.data / "work").glob("run-*")) == [], "and its own once it ends"
    statuses = {str(run["reconciliation_id"]): run["status"] for run in setup.runs()}
    assert statuses.pop(str(dead["reconciliation_id"])) == "abandoned"
    assert list(statuses.values()) == ["completed"]


def test_a_run_killed_after_recording_results_shows_its_process_gone_and_is_abandoned_at_that_step(
    setup: Setup,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *setup.args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**setup.env(), "STALL_AT": "results"},
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "RECORDED", line + (proc.stderr.read() if proc.stderr else "")
    proc.kill()
    proc.communicate(timeout=60)
    (run,) = setup.runs()
    run_id = str(run["reconciliation_id"])
    assert run["status"] == "running"
    with Settler(setup.data) as app:
        head = app.store.head_position

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "settler_pipeline.cli", *args],
            capture_output=True,
            text=True,
            env=setup.env(),
            timeout=300,
            cwd=ROOT,
        )

    # the reads say the process is gone, and write nothing
    listed = cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["status"], row["process_gone"]) == ("running", True)
    table = cli("runs")
    assert "running (no live process)" in table.stdout and "settler retry RUN" in table.stdout
    shown = cli("state", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert "no live process" in shown.stdout and f"settler retry {run_id[:8]}" in shown.stdout
    assert json.loads(cli("state", run_id, "--json").stdout)["process_gone"] is True
    with Settler(setup.data) as app:
        assert app.store.head_position == head
        assert app.state(run_id).status == "running"

    retried = cli("retry", run_id, "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["status"] == "completed"
    with Settler(setup.data) as app:
        (abandoned,) = app.events(stream=run_id, event_types=["ReconciliationAbandoned"])["data"].to_list()
    assert json.loads(abandoned)["step"] == "record_results"
    listed = cli("runs", "--json")
    assert json.loads(listed.stdout)[0]["process_gone"] is False
    # The abandoned attempt did not complete: both read models of errors count it, as a failure.
    with Settler(setup.data) as app:
        projections.update(app.store, setup.data)
    hotspots = projections.sql(
        setup.data, "SELECT error_type, step, count FROM error_hotspots_view WHERE error_type = 'abandoned'"
    )
    assert hotspots.rows() == [("abandoned", "record_results", 1)]
    usage = projections.sql(setup.data, "SELECT sum(runs_failed), sum(runs_completed) FROM tenant_usage_view")
    assert usage.row(0) == (1, 1)
