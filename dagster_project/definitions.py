"""The Dagster code location: wiring only; the logic lives in ``settler_pipeline``.

Load it with ``dagster dev -w workspace.yaml`` (data directory: ``SETTLER_DATA_DIR``, default the
embedded ``data/``; job specs that become partitioned reconciliation assets: ``SETTLER_JOB_SPECS``,
default ``<data dir>/jobs``; scheduled work acts as the ``service_user`` setting).
"""

from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.assets import GROUP, event_log, read_models_asset, snapshots_asset
from dagster_project.jobs import reconciliation_job
from dagster_project.reconciliations import JobSpecAssets, MatchRatePolicy, job_spec_assets
from dagster_project.resources import AlertsResource, EventStoreResource, ReadModelsResource
from dagster_project.sensors import (
    event_log_sensor,
    failure_alert_sensor,
    job_specs_sensor,
    outside_runs_sensor,
)

read_models_job = dg.define_asset_job(
    "read_models_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Bring snapshots and every read model up to the log's head (incremental, one pass).",
)


def build_definitions(job_specs_dir: Path | None = None) -> dg.Definitions:
    """The code location, with one reconciliation asset per job spec in ``job_specs_dir`` (default: the
    configured jobs folder)."""
    return definitions_of(job_spec_assets(job_specs_dir))


def definitions_of(job_specs: JobSpecAssets) -> dg.Definitions:
    """The code location around the reconciliation assets ``job_specs`` already built."""
    upstream = [asset.key for asset in job_specs.assets]
    return dg.Definitions(
        assets=[event_log, snapshots_asset(upstream), read_models_asset(upstream), *job_specs.assets],
        jobs=[reconciliation_job, read_models_job, *job_specs.jobs],
        schedules=job_specs.schedules,
        sensors=[
            event_log_sensor(read_models_job),
            job_specs_sensor(job_specs),
            outside_runs_sensor(job_specs),
            failure_alert_sensor,
        ],
        # One process per run, not per step: the steps share the read models' lock anyway, and a
        # process per step costs more (imports, code load) than the read models' whole update.
        executor=dg.in_process_executor,
        # Fixed, not configurable per run: a run's config could otherwise name the user the run acts
        # as (any Settler user, since the location's login may impersonate), another data directory,
        # or a webhook that receives every failure alert. A run config giving them any is refused
        # (the empty schema), not ignored: the run would act on another directory than it names.
        resources={
            name: dg.ResourceDefinition(resource_fn=_fixed(resource), config_schema={})
            for name, resource in {
                "event_store": EventStoreResource(),
                "read_models": ReadModelsResource(),
                "alerts": AlertsResource(),
                "match_rate_policy": MatchRatePolicy(),
            }.items()
        },
    )


def _fixed(resource: object) -> Any:
    """A resource function that gives ``resource`` whatever the run."""
    return lambda _init: resource


defs = build_definitions()
