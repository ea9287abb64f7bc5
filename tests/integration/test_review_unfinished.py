"""`settler review list` of a run that has not completed says the run cannot be reviewed yet, why, and
what to do, instead of listing items whose every decision would be refused."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from settler_pipeline.cli.main import app
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DAY = date(2026, 11, 1)


def test_only_a_completed_run_is_listed_for_review(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "in", records=30, start=DAY, days=1)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
        queued = settler.reconcile(spec, start=DAY, end=DAY, execute=False).reconciliation_id
        settler.cancel(queued, reason="test")
        done = settler.reconcile(spec, start=DAY, end=DAY, supersede=True).reconciliation_id
        (tmp_path / "in" / "source.csv").unlink()
        failed = settler.reconcile(spec, start=DAY, end=DAY, supersede=True).reconciliation_id
    env = {"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"}
    for run, status in ((queued, "cancelled"), (failed, "failed")):
        listed = CliRunner().invoke(app, ["review", "list", run], env=env)
        assert listed.exit_code == 1, listed.output
        assert f"is {status}: only a completed run can be reviewed" in listed.stderr
        assert "settler retry" in listed.stderr and "review confirm" not in listed.output
    listed = CliRunner().invoke(app, ["review", "list", done], env=env)
    assert listed.exit_code == 0 and "only a completed run" not in listed.output, listed.output


def test_a_run_whose_process_is_gone_is_sent_to_retry() -> None:
    from settler_pipeline.application.review import not_reviewable
    from settler_pipeline.domain.reconciliation import ReconciliationState

    running = ReconciliationState(reconciliation_id="r", status="running")
    refused = not_reviewable(running, "0192f0c4", process_gone=True)
    assert refused is not None and "running but its process is gone" in refused.message
    assert refused.hint is not None and "settler retry 0192f0c4" in refused.hint
    live = not_reviewable(running, "0192f0c4", process_gone=False)
    assert live is not None and live.hint is not None and "wait until it completes" in live.hint
    assert (
        not_reviewable(
            ReconciliationState(reconciliation_id="r", status="completed"), "r", process_gone=False
        )
        is None
    )
