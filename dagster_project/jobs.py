"""The reconciliation job (launched with a job spec in run config) and one daily schedule per job spec."""

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.resources import EventStoreResource, default_data_dir
from settler_pipeline.errors import SettlerError, StoreError, UserError
from settler_pipeline.jobspec import load_job_spec

# Transient trouble (a lock held too long by another process) is retried; a user's mistake is not.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)


class ReconcileConfig(dg.Config):  # type: ignore[misc]
    """What to reconcile: a job spec file and an inclusive date range."""

    job_spec: str
    start: str  # YYYY-MM-DD
    end: str = ""  # YYYY-MM-DD, default: start
    tenant: str = ""  # name or id; default: the spec's tenant or the user's only tenant
    idempotency_key: str = ""  # same key twice = the run happens once (schedules set one per partition)


@dg.op(retry_policy=TRANSIENT_RETRY, tags={"kind": "settler"})
def reconcile(
    context: dg.OpExecutionContext, config: ReconcileConfig, event_store: EventStoreResource
) -> dict[str, Any]:
    """Run one reconciliation and record its figures as metadata."""
    try:
        start = date.fromisoformat(config.start)
        end = date.fromisoformat(config.end) if config.end else start
        with event_store.app() as app:
            outcome = app.reconcile(
                config.job_spec,
                start=start,
                end=end,
                tenant=config.tenant or None,
                idempotency_key=config.idempotency_key or None,
            )
    except StoreError:
        raise  # transient: the retry policy runs the op again
    except (UserError, SettlerError, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    summary = outcome.summary or {}
    metadata = {
        "reconciliation_id": outcome.reconciliation_id,
        "status": outcome.status,
        "attempt": outcome.attempt,
        "events_appended": outcome.events_appended,
        "repeated_command": outcome.repeated_command,
        "matched": summary.get("matched_count", 0),
        "unmatched_source": summary.get("unmatched_source_count", 0),
        "unmatched_target": summary.get("unmatched_target_count", 0),
        "proposed": summary.get("proposed_count", 0),
        "quarantined": summary.get("quarantined_count", 0),
        "duration_ms": summary.get("duration_ms", 0),
        "match_rate": float(summary.get("match_rate", 0.0)),
    }
    context.add_output_metadata(metadata)
    if outcome.status == "failed":
        error = outcome.error or {}
        raise dg.Failure(
            description=f"reconciliation failed at {error.get('step')}: {error.get('message')}",
            metadata={"reconciliation_id": outcome.reconciliation_id},
            allow_retries=False,
        )
    return metadata


@dg.job(description="Reconcile one job spec over a date range (give both in run config).")
def reconciliation_job() -> None:
    reconcile()


def job_spec_dir() -> Path:
    """Folder whose ``*.yaml`` job specs get a daily schedule: ``SETTLER_JOB_SPECS``, else
    ``<data dir>/jobs``."""
    return Path(os.environ.get("SETTLER_JOB_SPECS") or default_data_dir() / "jobs")


def daily_job(spec_path: Path, start_date: str = "2026-01-01") -> dg.JobDefinition:
    """A job partitioned by day that reconciles ``spec_path`` over the partition's date."""
    spec = load_job_spec(spec_path)
    name = spec.name.replace("-", "_")

    @dg.daily_partitioned_config(start_date=start_date)
    def partition_config(window_start: datetime, _window_end: datetime) -> dict[str, Any]:
        day = window_start.date().isoformat()
        return {
            "ops": {
                "reconcile": {
                    "config": {
                        "job_spec": str(spec_path),
                        "start": day,
                        "end": day,
                        "idempotency_key": f"{spec.name}:{day}",
                    }
                }
            }
        }

    @dg.job(name=f"reconcile_{name}_daily", config=partition_config, tags={"job_spec": spec.name})
    def partitioned() -> None:
        reconcile()

    return partitioned


def daily_jobs_and_schedules() -> tuple[list[dg.JobDefinition], list[dg.ScheduleDefinition]]:
    """One partitioned job and schedule (02:00 UTC, the day before) per job spec found."""
    jobs: list[dg.JobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    folder = job_spec_dir()
    for spec_path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            job = daily_job(spec_path)
        except SettlerError:
            continue  # a broken spec must not take the whole code location down; `settler` reports it
        jobs.append(job)
        schedules.append(
            dg.build_schedule_from_partitioned_job(job, hour_of_day=2, name=f"{job.name}_schedule")  # type: ignore[arg-type]
        )
    return jobs, schedules
