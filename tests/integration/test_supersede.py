"""A job, tenant and day counts once: a second run of the same days is refused unless it supersedes the
first, and the superseded run leaves the exceptions and matches while staying visible in the summary."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from settler_pipeline import projections
from settler_pipeline.cli.main import app as cli
from settler_pipeline.errors import StateError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DAY = date(2026, 11, 2)


@pytest.fixture
def reconciled(tmp_path: Path) -> tuple[Path, Path, str]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=400, start=date(2026, 11, 1), days=3, seed=3)
    data = tmp_path / "data"
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        first = app.reconcile(spec, start=DAY, end=DAY)
    assert first.status == "completed"
    return data, spec, first.reconciliation_id


def test_a_second_run_of_the_same_days_is_refused_with_a_hint(reconciled: tuple[Path, Path, str]) -> None:
    data, spec, first = reconciled
    with Settler(data, user="ops") as app:
        with pytest.raises(StateError, match="already reconciled") as raised:
            app.reconcile(spec, start=date(2026, 11, 1), end=DAY)
        assert first in str(raised.value) and "--supersede" in (raised.value.hint or "")
        # Other days of the same job are not affected.
        assert app.reconcile(spec, start=date(2026, 11, 3), end=date(2026, 11, 3)).status == "completed"


def test_a_run_is_superseded_whole_or_not_at_all(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=400, start=date(2026, 11, 1), days=3, seed=3)
    data = tmp_path / "data"
    days = (date(2026, 11, 1), date(2026, 11, 3))
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        wide = app.reconcile(spec, start=days[0], end=days[1]).reconciliation_id
        head = app.store.head_position
        # one day of a three-day run would replace all of it: its other two days would count nowhere
        with pytest.raises(StateError, match="leave its other days unreconciled") as raised:
            app.reconcile(spec, start=DAY, end=DAY, supersede=True)
        assert wide in str(raised.value)
        assert "--from 2026-11-01 --to 2026-11-03" in (raised.value.hint or "")
        assert app.store.head_position == head and app.state(wide).status == "completed"
        # a run of every day it covers (or more) replaces it
        wider = app.reconcile(spec, start=days[0], end=date(2026, 11, 4), supersede=True)
        assert wider.status == "completed"
        assert app.state(wide).status == "superseded"


def test_the_cli_refuses_clearly_without_supersede(reconciled: tuple[Path, Path, str]) -> None:
    data, spec, _ = reconciled
    args = ["reconcile", str(spec), "--from", DAY.isoformat(), "--data-dir", str(data), "--user", "ops"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--supersede" in refused.output
    assert "Traceback" not in refused.output
    accepted = CliRunner().invoke(cli, [*args, "--supersede"])
    assert accepted.exit_code == 0, accepted.output


def test_superseding_keeps_each_job_tenant_and_day_once_in_the_read_models(
    reconciled: tuple[Path, Path, str],
) -> None:
    data, spec, first = reconciled
    with Settler(data, user="ops") as app:
        projections.update(app.store, data)
        before = projections.read_model(data, "reconciliation_exceptions")
        second = app.reconcile(spec, start=DAY, end=DAY, supersede=True)
        assert app.state(first).status == "superseded"
        assert not app.state(first).open_exceptions
        projections.update(app.store, data)
        incremental = {m: projections.read_model(data, m) for m in projections.NAMES}
        projections.rebuild(app.store, data)
    for name, rows in incremental.items():  # applied in steps or from scratch: the same rows
        assert rows.equals(projections.read_model(data, name)), name
    summary = projections.read_model(data, "reconciliation_summary")
    statuses = dict(zip(summary["reconciliation_id"], summary["status"], strict=True))
    assert statuses == {first: "superseded", second.reconciliation_id: "completed"}
    exceptions = projections.read_model(data, "reconciliation_exceptions")
    matches = projections.read_model(data, "reconciliation_matches")
    assert set(exceptions["reconciliation_id"]) == {second.reconciliation_id}
    assert exceptions.height == before.height  # same inputs: same items, counted once
    assert set(matches["reconciliation_id"]) == {second.reconciliation_id}
    with Settler(data, user="ops") as app, pytest.raises(StateError):  # finished: cannot be cancelled
        app.cancel(first, "too late")


def test_runs_filters_by_every_status_it_shows(reconciled: tuple[Path, Path, str]) -> None:
    data, spec, first = reconciled
    base = ["--data-dir", str(data), "--user", "ops"]
    args = ["reconcile", str(spec), "--from", DAY.isoformat(), *base, "--supersede"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    listed = CliRunner().invoke(cli, ["runs", *base, "--status", "superseded", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["reconciliation_id"] for row in json.loads(listed.stdout)] == [first]
    for status in ("started", "running", "completed", "failed", "cancelled", "abandoned"):
        shown = CliRunner().invoke(cli, ["runs", *base, "--status", status, "--json"])
        assert shown.exit_code == 0, (status, shown.output)
        assert all(row["status"] == status for row in json.loads(shown.stdout))
    wrong = CliRunner().invoke(cli, ["runs", *base, "--status", "new"])
    assert wrong.exit_code == 1 and "superseded" in wrong.output and "abandoned" in wrong.output


def _late_spec(spec: Path) -> Path:
    """The same job reading a bank statement that has not arrived yet (its run fails at the fetch)."""
    late = spec.with_name("late.yaml")
    late.write_text(spec.read_text().replace("path: target.csv", "path: late.csv"))
    return late


def test_a_superseding_run_that_fails_replaces_nothing(reconciled: tuple[Path, Path, str]) -> None:
    data, spec, first = reconciled
    late = _late_spec(spec)
    with Settler(data, user="ops") as app:
        before = app.state(first)
        failed = app.reconcile(late, start=date(2026, 11, 1), end=DAY, supersede=True)
        assert failed.status == "failed"
        kept = app.state(first)
        # the day still has its completed run, with every item open for review
        assert kept.status == "completed" and kept.open_exceptions == before.open_exceptions
        assert (
            app.service.live_runs(kept.tenant_id or "", kept.job_id or "", DAY, DAY)[0].reconciliation_id
            == first
        )
        projections.update(app.store, data)
    summary = projections.read_model(data, "reconciliation_summary")
    statuses = dict(zip(summary["reconciliation_id"], summary["status"], strict=True))
    assert statuses == {first: "completed", failed.reconciliation_id: "failed"}
    assert set(projections.read_model(data, "reconciliation_matches")["reconciliation_id"]) == {first}

    # once the statement arrives, the failed run is retried and only then replaces the first
    (spec.parent / "late.csv").write_bytes((spec.parent / "target.csv").read_bytes())
    with Settler(data, user="ops") as app:
        retried = app.retry(failed.reconciliation_id)
        assert retried.status == "completed"
        assert app.state(first).status == "superseded"
        trail = app.stream(first)
        last = trail.row(-1, named=True)
        assert last["event_type"] == "ReconciliationSuperseded"
        assert last["correlation_id"] == trail["correlation_id"][0]  # the replaced run's own flow
        completed = app.stream(failed.reconciliation_id).row(-1, named=True)
        # one atomic batch: the completion and the supersede are adjacent in the log
        assert completed["event_type"] == "ReconciliationCompleted"
        assert abs(last["global_position"] - completed["global_position"]) == 1
        assert last["causation_id"] == completed["event_id"]


def test_a_superseding_run_refused_by_the_memory_check_replaces_nothing(
    reconciled: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, spec, first = reconciled
    monkeypatch.setenv("SETTLER_MAX_MEMORY", "1MB")
    with Settler(data, user="ops") as app:
        refused = app.reconcile(spec, start=DAY, end=DAY, supersede=True)
        assert refused.status == "failed"
        assert app.state(first).status == "completed"


def test_the_replaced_run_may_change_until_the_new_run_completes(reconciled: tuple[Path, Path, str]) -> None:
    data, spec, first = reconciled
    with Settler(data, user="ops") as app:
        queued = app.reconcile(spec, start=DAY, end=DAY, supersede=True, execute=False)
        assert app.state(first).status == "completed"  # a queued run replaces nothing yet
    base = ["--data-dir", str(data), "--user", "ops"]
    listed = json.loads(CliRunner().invoke(cli, ["runs", *base, "--json"]).stdout)
    assert {r["reconciliation_id"]: r["supersedes"] for r in listed} == {
        queued.reconciliation_id: [first],
        first: [],
    }
    table = CliRunner().invoke(cli, ["runs", *base], env={"COLUMNS": "300"}).output
    short = next(r["short_id"] for r in listed if r["reconciliation_id"] == first)
    assert "started (replaces" in table and short in table and "completed)" in table  # cells wrap
    with Settler(data, user="ops") as app:
        item = next(iter(app.state(first).open_exceptions))
        app.review("dismiss", first, exception_ids=[item], reason="bank fee")  # the first run moves on
        done = app.service.execute(queued.reconciliation_id, user_id="ops")
        assert done.status == "completed"
        assert app.state(first).status == "superseded"
