"""The failure alert sees every failed run of the code location's jobs, however the run was launched:
from the webserver, a schedule or sensor, or the `dagster` CLI (`dagster job execute`, `dagster asset
materialize`), whose runs carry no code location of the webserver's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.remote_origin import RegisteredCodeLocationOrigin

from dagster_project.definitions import build_definitions
from dagster_project.resources import AlertsResource
from settler_pipeline.session import Settler

# what the daemon hands a sensor of the location `make dagster` loads (workspace.yaml)
LOCATION = RegisteredCodeLocationOrigin("settler")


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SETTLER_DATA_DIR", str(data))
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
    return data


def daemon_tick(
    definitions: dg.Definitions, instance: dg.DagsterInstance, data: Path, cursor: str | None
) -> Any:
    """One tick of ``failure_alert_sensor`` as the daemon evaluates it in the code location."""
    context = dg.SensorEvaluationContext(
        instance_ref=None,
        cursor=cursor,
        repository_name="__repository__",
        repository_def=definitions.get_repository_def(),
        instance=instance,
        sensor_name="failure_alert_sensor",
        resources={"alerts": AlertsResource(data_dir=str(data))},
        code_location_origin=LOCATION,
    )
    return definitions.resolve_sensor_def("failure_alert_sensor").evaluate_tick(context)


def test_a_run_launched_from_the_dagster_cli_that_fails_is_alerted(data: Path, tmp_path: Path) -> None:
    definitions = build_definitions(tmp_path / "no-job-specs")
    job = definitions.resolve_job_def("reconciliation_job")
    with dg.instance_for_test() as instance:
        first = daemon_tick(definitions, instance, data, None)  # the first tick only places the cursor
        # what `dagster job execute` does: the run in this process, with no webserver's code location
        result = job.execute_in_process(
            run_config={"ops": {"reconcile": {"config": {"job_spec": "gone.yaml", "start": "2026-11-02"}}}},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        daemon_tick(definitions, instance, data, first.cursor)
    alert = data / "alerts" / f"{result.run_id}.json"
    assert alert.exists(), "the failed run was not alerted"
    assert "gone.yaml" in json.loads(alert.read_text())["message"]


def test_a_failed_run_of_another_code_location_is_not_alerted(data: Path, tmp_path: Path) -> None:
    @dg.op
    def explode() -> None:
        raise dg.Failure(description="not Settler's")

    @dg.job
    def someone_elses_job() -> None:
        explode()

    definitions = build_definitions(tmp_path / "no-job-specs")
    with dg.instance_for_test() as instance:
        first = daemon_tick(definitions, instance, data, None)
        result = someone_elses_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        daemon_tick(definitions, instance, data, first.cursor)
    assert not (data / "alerts").exists() or not list((data / "alerts").iterdir())
