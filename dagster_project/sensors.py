"""Sensors: the one mechanism that keeps read models fresh, the jobs folder and tenants watcher, and the
failure alert."""

import time
from typing import Any, Final

import dagster as dg

from dagster_project.assets import EVENT_LOG, observe_event_log
from dagster_project.outside_runs import outside_materializations
from dagster_project.reconciliations import TENANT_PARTITIONS, TENANTS, JobSpecAssets
from dagster_project.resources import AlertsResource, EventStoreResource, ReadModelsResource
from settler_pipeline import projections
from settler_pipeline.alerts import FailureAlert
from settler_pipeline.application.access import AccessControl
from settler_pipeline.errors import NotFoundError, SettlerError
from settler_pipeline.jobspec import load_job_spec

# A failed update of the read models is tried again after this long (a persistent failure then alerts
# every few minutes, not every tick).
RETRY_AFTER_S: Final = 300


def event_log_sensor(job: Any) -> dg.SensorDefinition:
    """Observes ``event_log`` and requests one run of ``job`` (snapshots and read models) whenever the
    log's head has moved since the last request: on by default, and the only automation of those assets.
    When that run failed or was cancelled and the read models are still behind the head, it is requested
    again ``RETRY_AFTER_S`` after it ended (they would otherwise wait for the next event)."""

    @dg.sensor(
        name="event_log_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(context: dg.SensorEvaluationContext, event_store: EventStoreResource) -> dg.SensorResult:
        try:
            with event_store.open(read_only=True) as store:
                head, metadata = observe_event_log(store)
                applied = min(int(s["checkpoint"]) for s in projections.status(store, event_store.path()))
        except NotFoundError:
            return dg.SensorResult(skip_reason=f"no Settler data at {event_store.path()} yet")
        last = int(context.cursor or 0)
        if head <= last:
            return _retry_of_failed_update(context, job.name, head, applied)
        # The head goes in metadata, not in the data version: Dagster's staleness check does not see
        # an external asset's observed versions, so a versioned observation marks every read model
        # "unsynced" forever; the sensor, not staleness, decides when they update.
        observation = dg.AssetObservation(asset_key=EVENT_LOG, metadata=metadata)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"head-{head}", tags={"settler/head": str(head)})],
            asset_events=[observation],
            cursor=str(head),
        )

    return _sensor


def _retry_of_failed_update(
    context: dg.SensorEvaluationContext, job_name: str, head: int, applied: int
) -> dg.SensorResult:
    """No new events: a new request of the update only when the read models are behind ``head`` and
    the job's latest run ended without success at least ``RETRY_AFTER_S`` ago."""
    if applied >= head:
        return dg.SensorResult(skip_reason=f"no new events (head {head})")
    records = context.instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
    latest = records[0] if records else None
    if latest is None or latest.dagster_run.status not in (
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    ):
        return dg.SensorResult(skip_reason=f"no new events (head {head}; read models at {applied})")
    run_id = latest.dagster_run.run_id
    ended = latest.end_time or latest.update_timestamp.timestamp()
    if time.time() - ended < RETRY_AFTER_S:
        return dg.SensorResult(
            skip_reason=f"read models at {applied} of head {head}: the update {run_id} "
            + ("failed" if latest.dagster_run.status == dg.DagsterRunStatus.FAILURE else "was cancelled")
            + f"; requested again {RETRY_AFTER_S} s after it ended"
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"head-{head}-after-{run_id}", tags={"settler/head": str(head)})]
    )


def job_specs_sensor(found: JobSpecAssets) -> dg.SensorDefinition:
    """Adds a ``tenants`` partition for every tenant in the access file, and reports job specs that are
    broken or new since the code location loaded (new ones need a reload: assets are defined at load)."""

    @dg.sensor(
        name="job_specs_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
    )
    def _sensor(context: dg.SensorEvaluationContext, event_store: EventStoreResource) -> dg.SensorResult:
        names = [t.name for t in AccessControl(event_store.path()).tenants()]
        known = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
        missing = [n for n in names if n not in known]
        problems = [f"broken job spec {p.name}: {why}" for p, why in sorted(found.broken.items())]
        folder = found.folder
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if path.resolve() in found.paths or path in found.broken:
                continue
            try:
                load_job_spec(path)
            except SettlerError as exc:
                problems.append(f"broken job spec {path.name}: {exc}")
            else:
                problems.append(f"new job spec {path.name}: reload the code location to get its asset")
        summary = "; ".join(problems) or f"{len(found.paths)} job specs, {len(names)} tenants, all fine"
        requests = [TENANTS.build_add_request(missing)] if missing else []
        return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason=summary)

    return _sensor


def outside_runs_sensor(found: JobSpecAssets) -> dg.SensorDefinition:
    """Reports runs completed outside Dagster (CLI, Python API) as materializations of the partitions
    they cover (outside_runs.py), so the catalog matches the log."""

    @dg.sensor(
        name="outside_runs_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
    )
    def _sensor(context: dg.SensorEvaluationContext, read_models: ReadModelsResource) -> dg.SensorResult:
        events = outside_materializations(context.instance, read_models.path(), found)
        if not events:
            return dg.SensorResult(skip_reason="every completed run's partitions are materialized")
        return dg.SensorResult(asset_events=list(events))

    return _sensor


@dg.run_failure_sensor(
    name="failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed run (reconciliations and asset runs) once and reports it: a log line, "
    "<data dir>/alerts/<run id>.json, and a webhook when SETTLER_ALERT_WEBHOOK is set.",
    # Dagster's default watches only runs launched through this code location (webserver, schedules,
    # sensors): a run of `dagster job execute` or `dagster asset materialize` carries no location and
    # its failure would go unreported. Every location's runs are seen instead, and of_this_location
    # keeps this location's own.
    monitor_all_code_locations=True,
)
def failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    if of_this_location(context):
        alerts.recorder().record(failure_alert(context))


def of_this_location(context: dg.RunFailureSensorContext) -> bool:
    """Whether the failed run ran this code location's job (and, for a run of selected assets, only
    its assets): true for a run without a location, however it was launched."""
    repository = context.repository_def
    if repository is None:
        return True  # evaluated outside a code location (a test calling the sensor directly)
    run = context.dagster_run
    if not repository.has_job(run.job_name):
        return False
    mine = repository.asset_graph.get_all_asset_keys()
    return all(key in mine for key in run.asset_selection or ())


def failure_alert(context: dg.RunFailureSensorContext) -> FailureAlert:
    """The alert for a failed run: its step errors (what the user must fix) or the run's own message."""
    run = context.dagster_run
    messages = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            why = data.user_failure_data.description  # a dg.Failure: the library's own words
        else:
            why = data.error.message.strip() if data.error else str(event.message)
        messages.append(f"{event.step_key}: {why}")
    planned = context.instance.get_records_for_run(
        run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assets = {r.event_log_entry.dagster_event.asset_key for r in planned if r.event_log_entry.dagster_event}
    return FailureAlert(
        run_id=run.run_id,
        job_name=run.job_name,
        message="; ".join(messages) or (context.failure_event.message or "the run failed"),
        partition=run.tags.get("dagster/partition"),
        assets=tuple(sorted(k.to_user_string() for k in (run.asset_selection or assets) if k is not None)),
        tags={k: v for k, v in run.tags.items() if k.startswith(("settler/", "dagster/partition"))},
    )
