"""The Dagster code location: loads with a rich catalog, materializes the read models in one pass with
every check green, reconciles tenant-day partitions (a re-materialization supersedes), keeps read models
fresh through one sensor, alerts once per failed run, warns on a low match rate, and coexists with an
analyst's open connection."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project import sensors
from dagster_project.definitions import build_definitions, defs
from dagster_project.reconciliations import TENANTS, MatchRatePolicy
from dagster_project.resources import AlertsResource, EventStoreResource, ReadModelsResource
from dagster_project.sensors import failure_alert_sensor
from settler_pipeline import projections
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

READ_MODELS = projections.NAMES
MODELS = {m.name: m for m in projections.READ_MODELS}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=800, start=date(2026, 11, 1), days=4, seed=5)
    data = tmp_path / "data"
    # the code location's own default (the settings it reads at load): never the checkout's data/,
    # whose settler.toml (written by `make demo`) would decide which inputs the specs may read
    monkeypatch.setenv("SETTLER_DATA_DIR", str(data))
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        for day in (2, 3):
            app.reconcile(spec, start=date(2026, 11, day), end=date(2026, 11, day))
    return data, spec


def resources(data: Path, user: str = "ops", **policy: Any) -> dict[str, object]:
    return {
        "event_store": EventStoreResource(data_dir=str(data), user=user),
        "read_models": ReadModelsResource(data_dir=str(data)),
        "alerts": AlertsResource(data_dir=str(data)),
        "match_rate_policy": MatchRatePolicy(**policy),
    }


def unpartitioned(definitions: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The materializable assets without partitions: snapshots and the read models."""
    return [
        a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition) and a.partitions_def is None
    ]


def asset_named(definitions: dg.Definitions, name: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(name)
    return next(a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition) and a.keys == {key})


def test_the_definitions_load_with_a_catalog_and_one_automation_mechanism() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"event_log", "aggregate_snapshots", *READ_MODELS} <= keys
    for name in READ_MODELS:
        node = graph.get(dg.AssetKey(name))
        assert node.automation_condition is None  # the sensor is the one mechanism
        assert {"duckdb", "polars", "parquet"} <= set(node.kinds)
        assert node.owners and node.code_version and node.description
        schema = node.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == [c.name for c in MODELS[name].columns]
        assert all(c.description for c in schema.columns)
    sensors = {s.name: s for s in defs.sensors or []}
    assert set(sensors) >= {"event_log_sensor", "job_specs_sensor", "failure_alert_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert defs.resolve_job_def("reconciliation_job") is not None


def test_materializing_the_read_models_passes_every_check_in_one_pass(workspace: tuple[Path, Path]) -> None:
    data, _ = workspace
    with dg.instance_for_test() as instance:
        result = dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance)
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == 2 * len(READ_MODELS) + 2
        assert all(ev.passed for ev in evaluations), [ev.check_name for ev in evaluations if not ev.passed]
        steps = {e.step_key for e in result.all_events if e.is_step_success}
        assert "read_models" in steps  # the five read models: one step
        summary = result.asset_materializations_for_node("read_models")
        by_key = {m.asset_key.to_user_string(): m.metadata for m in summary}
        assert set(by_key) == set(READ_MODELS)
        meta = by_key["reconciliation_summary"]
        assert meta["dagster/row_count"].value == 2 and meta["projection_lag"].value == 0
        assert "| reconciliation_id |" in meta["preview"].value
        for metric in ("event_append_rate_per_min", "projection_lag_max", "event_store_bytes"):
            assert metric in meta and isinstance(meta[metric].value, int | float)
    with Settler(data, user="ops") as app:
        assert {s["lag"] for s in projections.status(app.store, data)} == {0}


def test_a_lag_check_is_not_fooled_by_an_append_after_the_update(workspace: tuple[Path, Path]) -> None:
    data, spec = workspace
    with dg.instance_for_test() as instance:
        assert dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance).success
    with Settler(data, user="ops") as app:  # events arrive after the update: the next one's job
        app.reconcile(spec, start=date(2026, 11, 4), end=date(2026, 11, 4))
    with dg.instance_for_test() as instance:
        result = dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance)
        lags = [ev for ev in result.get_asset_check_evaluations() if ev.check_name.endswith("_lag")]
        assert len(lags) == len(READ_MODELS) and all(ev.passed for ev in lags)


def test_checks_read_the_rows_of_the_update_they_judge_when_another_run_updates_meanwhile(
    workspace: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, spec = workspace
    update = projections.update

    def then_another_run(store: Any, root: Any, **kwargs: Any) -> Any:
        rows = update(store, root, **kwargs)
        # a second read_models_job run (the sensor's next request), waiting on the update lock, brings
        # the read models forward as soon as this one lets go, before this one reads what it published
        with Settler(data, user="ops") as app:
            app.reconcile(spec, start=date(2026, 11, 4), end=date(2026, 11, 4))
            update(app.store, root)
        return rows

    monkeypatch.setattr(projections, "update", then_another_run)
    with dg.instance_for_test() as instance:
        result = dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance)
        failed = [ev.check_name for ev in result.get_asset_check_evaluations() if not ev.passed]
        assert failed == []
        materialized = result.asset_materializations_for_node("read_models")
        meta = {m.asset_key.to_user_string(): m.metadata for m in materialized}["reconciliation_summary"]
    with Settler(data, user="ops") as app:
        published = {s["name"]: s for s in projections.status(app.store, data)}["reconciliation_summary"]
    # the rows shown are those of the checkpoint recorded beside them
    assert meta["dagster/row_count"].value == 3 and meta["checkpoint"].value == published["checkpoint"]


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
    with dg.instance_for_test() as instance:  # the same day again: refused without supersede
        again = job.execute_in_process(
            run_config=config, instance=instance, resources=resources(data), raise_on_error=False
        )
        assert not again.success


def test_damaged_log_files_fail_the_reconciliation_job_at_once_without_retries(
    workspace: tuple[Path, Path],
) -> None:
    # a retry policy is for what passes (a lock held too long); damaged files stay damaged, and each
    # retry only waited its backoff to fail the same way
    data, spec = workspace
    (data / "log" / "index.duckdb").write_bytes(os.urandom(5000))
    job = defs.resolve_job_def("reconciliation_job")
    config = {"ops": {"reconcile": {"config": {"job_spec": str(spec), "start": "2026-11-04"}}}}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config=config, instance=instance, resources=resources(data), raise_on_error=False
        )
        assert not result.success
        types = [event.event_type_value for event in result.all_events]
        assert "STEP_UP_FOR_RETRY" not in types and types.count("STEP_FAILURE") == 1
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "index.duckdb" in str(failure.event_specific_data)


def jobs_folder(tmp_path: Path, spec: Path, name: str = "sample") -> Path:
    """A jobs folder holding the spec (named ``name``) and its inputs."""
    folder = tmp_path / "jobs"
    folder.mkdir(exist_ok=True)
    for item in spec.parent.iterdir():
        if item.suffix == ".csv":
            shutil.copy(item, folder / item.name)
    shutil.copy(spec, folder / f"{name}.yaml")
    return folder


def test_a_partition_given_only_as_its_text_key_materializes(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    # a run launched with the `dagster/partition` tag alone (GraphQL, a RunRequest) names the key as
    # text; the asset failed with a bare AssertionError
    data, spec = workspace
    definitions = build_definitions(jobs_folder(tmp_path, spec))
    asset = asset_named(definitions, "reconciliation_sample")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        result = dg.materialize(
            [asset],
            tags={"dagster/partition": "2026-11-02|acme"},  # no per-dimension tags
            resources=resources(data),
            instance=instance,
        )
        assert result.success
        meta = result.asset_materializations_for_node("reconciliation_sample")[0].metadata
        assert dg.materialize(
            unpartitioned(definitions), resources=resources(data), instance=instance
        ).success
    summary = projections.read_model(data, "reconciliation_summary")
    run = summary.filter(summary["reconciliation_id"] == meta["reconciliation_id"].value)
    assert run["period_start"].to_list() == [date(2026, 11, 2)]


@pytest.mark.parametrize(
    "key",
    ["2031-01-01|acme", "2026-10-01|acme", "2026-11-02|globex", "2026-11-02|acme|x", "acme|2026-11-02"],
)
def test_a_text_key_that_is_no_partition_of_the_asset_fails_clearly_and_reconciles_nothing(
    workspace: tuple[Path, Path], tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, spec = workspace
    monkeypatch.setenv("SETTLER_FIRST_DAY", "2026-11-01")
    asset = asset_named(build_definitions(jobs_folder(tmp_path, spec)), "reconciliation_sample")
    with Settler(data, user="ops") as app:
        before = app.events(event_types=["ReconciliationStarted"]).height
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        result = dg.materialize(
            [asset],
            tags={"dagster/partition": key},
            resources=resources(data),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    data_of = failure.step_failure_data
    assert data_of.user_failure_data is not None, data_of.error and data_of.error.message
    assert f"{key} is not a partition of reconciliation_sample" in str(data_of.user_failure_data.description)
    with Settler(data, user="ops") as app:
        assert app.events(event_types=["ReconciliationStarted"]).height == before


def test_a_partition_counts_the_exceptions_the_read_model_holds_for_its_run(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    data, spec = workspace
    asset = asset_named(build_definitions(jobs_folder(tmp_path, spec)), "reconciliation_sample")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        key = dg.MultiPartitionKey({"day": "2026-11-03", "tenant": "acme"})  # a day with duplicates
        result = dg.materialize([asset], partition_key=key, resources=resources(data), instance=instance)
    meta = result.asset_materializations_for_node("reconciliation_sample")[0].metadata
    with Settler(data, user="ops") as app:
        projections.update(app.store, data)
    exceptions = projections.read_model(data, "reconciliation_exceptions")
    mine = exceptions.filter(exceptions["reconciliation_id"] == meta["reconciliation_id"].value)
    assert (mine["kind"] == "duplicate").any()  # the sample has duplicates: they are exceptions too
    assert meta["exceptions"].value == mine.height
    assert meta["duplicates"].value == (mine["kind"] == "duplicate").sum()


def test_backfilled_partitions_then_a_rematerialization_count_each_day_once(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    data, spec = workspace
    definitions = build_definitions(jobs_folder(tmp_path, spec))
    asset = asset_named(definitions, "reconciliation_sample")
    assert asset.partitions_def is not None
    day_dimension = asset.partitions_def.partitions_defs[0].partitions_def  # type: ignore[attr-defined]
    assert day_dimension.start.date() == date(2026, 11, 1)  # the earliest day in the data
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        runs = {}
        for day in ("2026-11-01", "2026-11-04", "2026-11-01"):  # a backfill of two, then one again
            key = dg.MultiPartitionKey({"day": day, "tenant": "acme"})
            result = dg.materialize([asset], partition_key=key, resources=resources(data), instance=instance)
            assert result.success
            meta = result.asset_materializations_for_node("reconciliation_sample")[0].metadata
            runs.setdefault(day, []).append(meta["reconciliation_id"].value)
            assert instance.get_run_by_id(result.run_id).tags["settler/acting_user"] == "ops"  # type: ignore[union-attr]
        assert meta["supersedes"].value == runs["2026-11-01"][0]
        assert dg.materialize(
            unpartitioned(definitions), resources=resources(data), instance=instance
        ).success
    summary = projections.read_model(data, "reconciliation_summary")
    live = summary.filter(summary["status"] != "superseded")
    days = live.select("job_id", "tenant_id", "period_start")
    assert days.height == days.unique().height == 4  # 11-01 .. 11-04, each once
    superseded = summary.filter(summary["status"] == "superseded")["reconciliation_id"].to_list()
    assert superseded == [runs["2026-11-01"][0]]
    for name in ("reconciliation_exceptions", "reconciliation_matches"):
        runs_seen = set(projections.read_model(data, name)["reconciliation_id"])
        assert runs["2026-11-01"][0] not in runs_seen and runs["2026-11-01"][1] in runs_seen


def event_log_ticks(instance: dg.DagsterInstance, data: Path) -> Callable[[str | None], Any]:
    """A tick of event_log_sensor on ``instance`` over ``data``, from a cursor."""
    sensor = defs.resolve_sensor_def("event_log_sensor")

    def tick(cursor: str | None) -> Any:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources(data))
        return sensor.evaluate_tick(context)

    return tick


def test_the_event_log_sensor_requests_exactly_one_update_per_new_head(workspace: tuple[Path, Path]) -> None:
    data, spec = workspace
    with dg.instance_for_test() as instance:
        tick = event_log_ticks(instance, data)

        first = tick(None)
        assert len(first.run_requests) == 1 and first.cursor
        assert tick(first.cursor).run_requests == []
        with Settler(data, user="ops") as app:
            app.reconcile(spec, start=date(2026, 11, 4), end=date(2026, 11, 4))
        after_append = tick(first.cursor)
        assert len(after_append.run_requests) == 1
        assert [o.asset_key.to_user_string() for o in after_append.asset_events] == ["event_log"]
        assert tick(after_append.cursor).run_requests == []


def test_the_event_log_sensor_requests_the_update_again_some_minutes_after_it_failed(
    workspace: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = workspace
    with dg.instance_for_test() as instance:
        tick = event_log_ticks(instance, data)

        first = tick(None)
        (request,) = first.run_requests
        # the update fails (say, the read models' lock held past its timeout by a rebuild), and no
        # event arrives after it: the read models would stay behind the log until one did
        job = defs.resolve_job_def("read_models_job")
        run = instance.create_run_for_job(job, run_config={}, tags=request.tags)
        instance.report_run_failed(run)
        waiting = tick(first.cursor)
        assert waiting.run_requests == [] and run.run_id in str(waiting.skip_message)
        monkeypatch.setattr(sensors, "RETRY_AFTER_S", 0)
        (again,) = tick(first.cursor).run_requests
        assert again.run_key != request.run_key and again.tags["settler/head"] == request.tags["settler/head"]
        assert dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance).success
        assert tick(first.cursor).run_requests == []  # up to date: nothing more


def test_a_failed_reconciliation_alerts_once_and_the_file_names_the_run(
    workspace: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, spec = workspace
    folder = jobs_folder(tmp_path, spec, "broken")
    broken = folder / "broken.yaml"
    text = broken.read_text().replace("path: target.csv", "path: gone.csv")
    broken.write_text(text.replace("name: sample", "name: broken"))
    asset = asset_named(build_definitions(folder), "reconciliation_broken")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        key = dg.MultiPartitionKey({"day": "2026-11-02", "tenant": "acme"})
        result = dg.materialize(
            [asset], partition_key=key, resources=resources(data), instance=instance, raise_on_error=False
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        caplog.set_level(logging.WARNING, logger="settler_pipeline.alerts")
        for _ in range(2):  # the sensor sees the same failure twice (say, after a restart): one alert
            context = dg.build_run_status_sensor_context(
                sensor_name="failure_alert_sensor",
                dagster_instance=instance,
                dagster_run=run,  # type: ignore[arg-type]
                dagster_event=failure,
                resources={"alerts": AlertsResource(data_dir=str(data))},
            ).for_run_failure()
            failure_alert_sensor(context)
    fired = [r for r in caplog.records if r.name == "settler_pipeline.alerts"]
    assert len(fired) == 1 and result.run_id in fired[0].getMessage()
    files = list((data / "alerts").glob("*.json"))
    assert [f.stem for f in files] == [result.run_id]
    body = json.loads(files[0].read_text())
    assert body["run_id"] == result.run_id and body["partition"] == "2026-11-02|acme"
    assert "gone.csv" in body["message"] and body["assets"] == ["reconciliation_broken"]


@pytest.mark.parametrize(("threshold", "passed"), [(0.999, False), (0.0, True)])
def test_the_match_rate_check_warns_below_the_threshold(
    workspace: tuple[Path, Path], tmp_path: Path, threshold: float, passed: bool
) -> None:
    data, spec = workspace
    asset = asset_named(build_definitions(jobs_folder(tmp_path, spec)), "reconciliation_sample")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        key = dg.MultiPartitionKey({"day": "2026-11-04", "tenant": "acme"})
        result = dg.materialize(
            [asset],
            partition_key=key,
            resources=resources(data, threshold=threshold),
            instance=instance,
        )
        assert result.success  # a warning never fails the run
        (check,) = result.get_asset_check_evaluations()
    assert check.passed is passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["tenant"].value == "acme"
    assert check.metadata["recent_average"].value is None  # no earlier run published: none, not -1


def test_an_analyst_holding_the_database_open_does_not_block_a_materialization(
    workspace: tuple[Path, Path],
) -> None:
    data, _ = workspace
    with dg.instance_for_test() as instance:
        assert dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance).success
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
        assert dg.materialize(unpartitioned(defs), resources=resources(data), instance=instance).success
    assert time.perf_counter() - started < 60
    second = analyst.stdout.readline().strip()
    assert analyst.wait(timeout=60) == 0
    assert first == "2" and second in ("2", "3")


def test_the_job_specs_sensor_adds_tenants_and_reports_broken_and_new_specs(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    data, spec = workspace
    folder = jobs_folder(tmp_path, spec)
    (folder / "typo.yaml").write_text("name: typo\nsource: {adapter: nope}\n")
    definitions = build_definitions(folder)
    shutil.copy(folder / "sample.yaml", folder / "later.yaml")  # added after the location loaded
    sensor = next(s for s in definitions.sensors or [] if s.name == "job_specs_sensor")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources(data))
        result = sensor.evaluate_tick(context)
        assert result.skip_message is not None
        assert "broken job spec typo.yaml" in result.skip_message
        assert "new job spec later.yaml: reload" in result.skip_message
        requests = result.dynamic_partitions_requests or []
        assert [list(r.partition_keys) for r in requests] == [["acme"]]


def outside_runs_setup(
    data: Path, spec: Path, tmp_path: Path
) -> tuple[dg.SensorDefinition, dg.AssetsDefinition]:
    """The read models brought up to date, then a location over a jobs folder holding ``spec``: its
    outside_runs_sensor and its one partitioned reconciliation asset."""
    with Settler(data, user="ops") as app:
        projections.update(app.store, data)
    definitions = build_definitions(jobs_folder(tmp_path, spec))
    (asset,) = [
        a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition) and a.partitions_def
    ]
    return definitions.resolve_sensor_def("outside_runs_sensor"), asset


def test_runs_made_outside_dagster_are_reported_once_as_materialized_partitions(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    data, spec = workspace  # days 2 and 3 reconciled through the Python API
    sensor, asset = outside_runs_setup(data, spec, tmp_path)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources(data))
        assert not sensor.evaluate_tick(context).asset_events  # tenant not a partition yet: nothing
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        events = sensor.evaluate_tick(context).asset_events
        assert sorted(e.partition for e in events) == ["2026-11-02|acme", "2026-11-03|acme"]
        assert all(e.asset_key == asset.key for e in events)
        assert all(e.metadata["recorded_outside_dagster"].value is True for e in events)
        for event in events:
            instance.report_runless_asset_event(event)
        assert instance.get_materialized_partitions(asset.key) == {"2026-11-02|acme", "2026-11-03|acme"}
        assert not sensor.evaluate_tick(context).asset_events  # each reported once

        # day 2 reconciled again with --supersede outside Dagster: the partition now names the new run
        with Settler(data, user="ops") as app:
            again = app.reconcile(spec, start=date(2026, 11, 2), end=date(2026, 11, 2), supersede=True)
            projections.update(app.store, data)
        (event,) = sensor.evaluate_tick(context).asset_events
        assert event.partition == "2026-11-02|acme"
        assert event.metadata["reconciliation_id"].value == again.reconciliation_id
        instance.report_runless_asset_event(event)
        assert not sensor.evaluate_tick(context).asset_events


def test_a_partition_rematerialized_in_dagster_is_not_reported_again_from_read_models_behind_it(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    data, spec = workspace  # days 2 and 3 reconciled through the Python API
    sensor, asset = outside_runs_setup(data, spec, tmp_path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, ["acme"])
        context = dg.build_sensor_context(instance=instance, resources=resources(data))
        for event in sensor.evaluate_tick(context).asset_events:
            instance.report_runless_asset_event(event)
        partition = dg.MultiPartitionKey({"day": "2026-11-02", "tenant": "acme"})
        result = dg.materialize(
            [asset], partition_key=partition, resources=resources(data), instance=instance
        )
        (materialized,) = result.asset_materializations_for_node(asset.node_def.name)
        rerun = materialized.metadata["reconciliation_id"].value
        # the read models have not caught up with the new run yet: they still show the run it superseded
        assert not sensor.evaluate_tick(context).asset_events
        with Settler(data, user="ops") as app:
            projections.update(app.store, data)
        assert not sensor.evaluate_tick(context).asset_events  # and once they have, nothing to report
        newest = instance.fetch_materializations(asset.key, limit=1).records[0].asset_materialization
        assert newest is not None and newest.metadata["reconciliation_id"].value == rerun


def test_a_spec_naming_its_tenant_is_partitioned_by_that_tenant_alone(
    workspace: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, spec = workspace  # acme reconciled days 2 and 3
    monkeypatch.setenv("SETTLER_DATA_DIR", str(data))
    with Settler(data, user="ops") as app:
        app.access.create_tenant("globex", admin="ops")
        acme = app.tenant("acme").tenant_id
        # the same job run for another tenant: not a partition of acme's spec
        app.reconcile(spec, start=date(2026, 11, 4), end=date(2026, 11, 4), tenant="globex")
        projections.update(app.store, data)
    folder = jobs_folder(tmp_path, spec)
    body = (folder / "sample.yaml").read_text()
    (folder / "sample.yaml").write_text(f"tenant_id: {acme}\n{body}")
    definitions = build_definitions(folder)
    asset = asset_named(definitions, "reconciliation_sample")
    assert isinstance(asset.partitions_def, dg.MultiPartitionsDefinition)
    tenants = asset.partitions_def.get_partitions_def_for_dimension("tenant")
    assert isinstance(tenants, dg.StaticPartitionsDefinition)
    assert tenants.get_partition_keys() == ["acme"]
    sensor = next(s for s in definitions.sensors or [] if s.name == "outside_runs_sensor")
    with dg.instance_for_test() as instance:
        # no dynamic tenants at all: the spec's own tenant is known from the spec
        context = dg.build_sensor_context(instance=instance, resources=resources(data))
        events = sensor.evaluate_tick(context).asset_events
        assert sorted(e.partition for e in events) == ["2026-11-02|acme", "2026-11-03|acme"]
        key = dg.MultiPartitionKey({"day": "2026-11-01", "tenant": "acme"})
        result = dg.materialize([asset], partition_key=key, resources=resources(data), instance=instance)
        assert result.success
