"""The reconciliation job: any job spec over any date range, given in run config (the partitioned
reconciliation assets in ``reconciliations.py`` cover the job specs of the jobs folder, a day at a time)."""

from datetime import date
from typing import Any

import dagster as dg

from dagster_project.resources import EventStoreResource
from settler_pipeline.errors import CorruptionError, SettlerError, StoreError, UserError

# Transient trouble (a lock held too long by another process) is retried; a user's mistake is not.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)


class ReconcileConfig(dg.Config):
    """What to reconcile: a job spec file and an inclusive date range."""

    job_spec: str
    start: str  # YYYY-MM-DD
    end: str = ""  # YYYY-MM-DD, default: start
    tenant: str = ""  # name or id; default: the spec's tenant or the user's only tenant
    idempotency_key: str = ""  # same key twice = the run happens once
    supersede: bool = False  # replace a live run of the same job, tenant and days (else: refused)


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
                supersede=config.supersede,
            )
    except CorruptionError as exc:  # damaged files stay damaged: a retry would fail the same way
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except StoreError:
        raise  # transient (a lock held too long, the disk): the retry policy runs the op again
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
    }
    if summary.get("match_rate") is not None:  # an empty run has none
        metadata["match_rate"] = float(summary["match_rate"])
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
