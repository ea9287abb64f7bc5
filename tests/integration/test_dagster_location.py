"""The Dagster code location: loads, materializes every asset on a real log, runs its checks, and
launches the reconciliation job with run config; an analyst's read-only connection coexists with it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import defs
from dagster_project.jobs import daily_job
from dagster_project.resources import EventStoreResource, ReadModelsResource
from settler_pipeline import projections
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=800, start=date(2026, 11, 1), days=4, seed=5)
    data = tmp_path / "data"
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        for day in (2, 3):
            app.reconcile(spec, start=date(2026, 11, day), end=date(2026, 11, day))
    return data, spec


def resources(data: Path, user: str = "ops") -> dict[str, object]:
    return {
        "event_store": EventStoreResource(data_dir=str(data), user=user),
        "read_models": ReadModelsResource(data_dir=str(data)),
    }


def test_the_definitions_load_with_assets_checks_jobs_and_the_sensor() -> None:
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "event_log",
        "aggregate_snapshots",
        "reconciliation_summary",
        "tenant_usage_view",
        "error_hotspots_view",
        "reconciliation_exceptions",
        "reconciliation_matches",
    } <= keys
    assert defs.resolve_job_def("reconciliation_job") is not None
    assert defs.resolve_sensor_def("event_log_sensor") is not None


def test_materializing_every_asset_on_a_real_log_passes_every_check(workspace: tuple[Path, Path]) -> None:
    data, _ = workspace
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],  # type: ignore[list-item]
            resources=resources(data),
            instance=instance,
        )
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) >= 12
        assert all(ev.passed for ev in evaluations), [ev.check_name for ev in evaluations if not ev.passed]
        summary = result.asset_materializations_for_node("reconciliation_summary")[0].metadata
        assert summary["rows"].value == 2 and summary["projection_lag"].value == 0
    with Settler(data, user="ops") as app:
        assert {s["lag"] for s in projections.status(app.store, data)} == {0}


def test_the_reconciliation_job_runs_from_run_config_and_records_metadata(
    workspace: tuple[Path, Path],
) -> None:
    data, spec = workspace
    job = defs.resolve_job_def("reconciliation_job")
    config = {"ops": {"reconcile": {"config": {"job_spec": str(spec), "start": "2026-11-04"}}}}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(run_config=config, instance=instance, resources=resources(data))
        assert result.success
        metadata = result.output_for_node("reconcile")
    assert metadata["status"] == "completed" and metadata["matched"] > 0 and 0 < metadata["match_rate"] <= 1
    with dg.instance_for_test() as instance:
        bad = {
            "ops": {
                "reconcile": {"config": {"job_spec": str(spec.parent / "nope.yaml"), "start": "2026-11-04"}}
            }
        }
        failed = job.execute_in_process(
            run_config=bad, instance=instance, resources=resources(data), raise_on_error=False
        )
        assert not failed.success


def test_a_daily_job_turns_a_partition_into_that_days_date_range(workspace: tuple[Path, Path]) -> None:
    _, spec = workspace
    job = daily_job(spec)
    config = job.partitioned_config.get_run_config_for_partition_key("2026-11-03")  # type: ignore[union-attr]
    op = config["ops"]["reconcile"]["config"]
    assert (op["start"], op["end"], op["idempotency_key"]) == (
        "2026-11-03",
        "2026-11-03",
        "sample:2026-11-03",
    )


def test_an_analyst_holding_the_database_open_does_not_block_a_materialization(
    workspace: tuple[Path, Path],
) -> None:
    data, _ = workspace
    with dg.instance_for_test() as instance:
        assert dg.materialize([*defs.assets], resources=resources(data), instance=instance).success  # type: ignore[list-item]
    analyst = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(data / "analytics.duckdb")!r}, read_only=True)
                con.execute("SET file_search_path = " + repr({str(data)!r}))
                print(con.sql("SELECT count(*) FROM reconciliation_summary").fetchall()[0][0], flush=True)
                time.sleep(6)
                print(con.sql("SELECT count(*) FROM reconciliation_summary").fetchall()[0][0], flush=True)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert analyst.stdout is not None
    first = analyst.stdout.readline().strip()
    with Settler(data, user="ops") as app:
        app.reconcile(data.parent / "inputs" / "sample.yaml", start=date(2026, 11, 1), end=date(2026, 11, 1))
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        assert dg.materialize([*defs.assets], resources=resources(data), instance=instance).success  # type: ignore[list-item]
    assert time.perf_counter() - started < 60
    second = analyst.stdout.readline().strip()
    assert analyst.wait(timeout=60) == 0
    assert first == "2" and second in ("2", "3")
