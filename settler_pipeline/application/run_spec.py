"""The job spec a run last ran with, as its events recorded it."""

from __future__ import annotations

from pathlib import Path

from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.jobspec import JobSpec, job_spec_from_mapping


def run_spec(state: ReconciliationState) -> JobSpec:
    """The job spec the run last ran with (its start's, or the latest retry's that brought one)."""
    return job_spec_from_mapping(
        dict(state.spec.get("spec", {})),
        base_dir=Path(state.spec.get("spec_dir") or "."),
        origin=f"the job spec of run {state.reconciliation_id}",
    )
