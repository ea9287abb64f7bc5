"""The operational metrics of a data directory are numbers that follow what happened, and `settler
stats` shows them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from settler_pipeline import projections
from settler_pipeline.cli.main import app as cli
from settler_pipeline.metrics import operational_metrics
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


def test_metrics_follow_appends_updates_and_snapshots(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=200, start=date(2026, 11, 1), days=2, seed=2)
    data = tmp_path / "data"
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        app.reconcile(spec, start=date(2026, 11, 1), end=date(2026, 11, 1))
        before = operational_metrics(app.store, data)
        assert before["read_model_query_ms"] == -1.0  # nothing published yet
        assert before["projection_lag_max"] == app.store.head_position
        assert before["event_append_rate_per_min"] == round(app.store.head_position / 60, 3)
        projections.update(app.store, data)
        projections.build_snapshots(app.store, every=10)
        after = operational_metrics(app.store, data)
    assert after["projection_lag_max"] == 0 and after["read_model_query_ms"] >= 0
    assert after["snapshots_total"] >= 1 and after["events_per_snapshot"] > 0
    assert after["event_store_bytes"] > 0
    stats = CliRunner().invoke(cli, ["stats", "--json", "--data-dir", str(data)])
    assert stats.exit_code == 0, stats.output
    assert set(json.loads(stats.output)["metrics"]) == set(after)
