"""Read models of real reconciliation runs (sample files through the command handlers) agree with the
runs' own summaries and with the aggregate."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from settler_pipeline import projections
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

START, END = date(2026, 11, 2), date(2026, 11, 6)


def test_summary_exceptions_and_matches_of_real_runs_match_the_runs_and_the_aggregate(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=1_200, start=date(2026, 11, 1), days=7, seed=5)
    data = tmp_path / "data"
    with Settler(data, user="alice") as app:
        app.access.create_tenant("acme", admin="alice")
        completed = app.reconcile(spec, start=START, end=END)
        run = completed.reconciliation_id
        state = app.state(run)
        proposals = sorted(state.open_proposals)
        unmatched = sorted(k for k in state.open_exceptions if k.startswith("unmatched:source:"))
        app.review("dismiss", run, exception_id=unmatched[0], reason="bank fee")
        if proposals:
            app.review("confirm", run, match_id=proposals[0])
        if len(proposals) > 1:
            app.review("reject", run, match_id=proposals[1], reason="wrong payer")
        target = spec.parent / "target.csv"
        shutil.move(target, tmp_path / "target.away")
        # a day of its own: each job, tenant and day counts once (a re-run of the same days supersedes)
        failed = app.reconcile(spec, start=END + timedelta(days=1), end=END + timedelta(days=1))
        shutil.move(tmp_path / "target.away", target)
        retried = app.retry(failed.reconciliation_id)
        projections.update(app.store)
        states = {r: app.state(r) for r in (run, failed.reconciliation_id)}

    summary = projections.read_model(data, "reconciliation_summary")
    assert summary.height == 2
    first = summary.filter(pl.col("reconciliation_id") == run).row(0, named=True)
    assert completed.summary is not None
    assert first["match_rate"] == completed.summary["match_rate"]
    assert first["total_source_records"] == completed.summary["total_source_records"]
    assert first["duplicates"] == completed.summary["duplicate_count"]
    second = summary.filter(pl.col("reconciliation_id") == failed.reconciliation_id).row(0, named=True)
    assert (second["status"], second["attempt"], second["last_error_type"]) == ("completed", 2, None)
    assert retried.summary is not None and second["match_rate"] == retried.summary["match_rate"]

    exceptions = projections.read_model(data, "reconciliation_exceptions")
    matches = projections.read_model(data, "reconciliation_matches")
    for run_id, state in states.items():
        row = summary.filter(pl.col("reconciliation_id") == run_id).row(0, named=True)
        counts = state.counts
        assert (row["matched"], row["proposed"]) == (counts.matched, counts.proposed)
        assert (row["unmatched_source"], row["unmatched_target"]) == (
            counts.unmatched_source,
            counts.unmatched_target,
        )
        mine = exceptions.filter(pl.col("reconciliation_id") == run_id)
        assert dict(mine.select("exception_id", "reason").iter_rows()) == dict(state.open_exceptions)
        made = matches.filter(
            (pl.col("reconciliation_id") == run_id)
            & pl.col("status").is_in(["matched", "confirmed", "manual"])
        )
        assert made.height == counts.matched
        assert (made["amount_difference"] == made["target_amount"] - made["amount"]).all()

    usage = projections.sql(
        data,
        "SELECT sum(runs_started), sum(runs_retried), sum(runs_completed), sum(runs_failed) "
        "FROM tenant_usage_view",
    )
    assert usage.row(0) == (2, 1, 2, 1)
    hotspots = projections.sql(
        data, "SELECT error_type, step, count FROM error_hotspots_view WHERE count > 0"
    )
    assert ("NotFoundError", "fetch_target", 1) in hotspots.rows()
    rate = projections.sql(
        data,
        "SELECT date_trunc('day', completed_at) AS day, avg(match_rate) AS match_rate "
        "FROM reconciliation_summary WHERE status = 'completed' GROUP BY 1",
    )
    assert rate.height >= 1
