"""A Dagster run acts as the service user the settings name: the location's resources take no per-run
configuration (the user to act as, the data directory, the alerts' webhook), and a run config that
gives them some is refused."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


def test_a_run_config_cannot_choose_the_user_a_run_acts_as(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=60, start=date(2026, 11, 2), days=1, seed=2)
    data = tmp_path / "data"
    monkeypatch.setenv("SETTLER_DATA_DIR", str(data))
    with Settler(data, user="ops") as app:
        acme = app.access.create_tenant("acme", admin="ops")
        app.access.grant("dagster", acme.tenant_id, "operator", by="ops")
    job = build_definitions(tmp_path / "no-jobs").resolve_job_def("reconciliation_job")
    claimed = {
        "ops": {"reconcile": {"config": {"job_spec": str(spec), "start": "2026-11-02", "tenant": "acme"}}},
        "resources": {"event_store": {"config": {"user": "ops", "data_dir": str(tmp_path / "elsewhere")}}},
    }
    # refused before the run starts, naming what it does not take (ignored, the run would have
    # reconciled in another data directory than the one its config names)
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"unexpected config.*resources:event_store"):
        job.execute_in_process(run_config=claimed)
    del claimed["resources"]
    assert job.execute_in_process(run_config=claimed).success
    with Settler(data, user="ops") as app:
        started = app.events(event_types=["ReconciliationStarted"])
    assert started.height == 1 and json.loads(started["data"][0])["initiated_by"] == "dagster"
    assert not (tmp_path / "elsewhere").exists()
