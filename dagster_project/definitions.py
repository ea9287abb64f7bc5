"""The Dagster code location: wiring only; the logic lives in ``settler_pipeline``.

Load it with ``dagster dev -w workspace.yaml`` (data directory: ``SETTLER_DATA_DIR``, default the
embedded ``data/``; job specs with daily schedules: ``SETTLER_JOB_SPECS``, default ``<data dir>/jobs``).
"""

import dagster as dg

from dagster_project.assets import (
    aggregate_snapshots,
    checks,
    event_log,
    event_log_sensor,
    read_model_assets,
    read_models_job,
)
from dagster_project.jobs import daily_jobs_and_schedules, reconciliation_job
from dagster_project.resources import EventStoreResource, ReadModelsResource

daily_jobs, daily_schedules = daily_jobs_and_schedules()

defs = dg.Definitions(
    assets=[event_log, aggregate_snapshots, *read_model_assets],
    asset_checks=list(checks),
    jobs=[reconciliation_job, read_models_job, *daily_jobs],
    schedules=daily_schedules,
    sensors=[event_log_sensor],
    resources={"event_store": EventStoreResource(), "read_models": ReadModelsResource()},
)
