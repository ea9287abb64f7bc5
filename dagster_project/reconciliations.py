"""Reconciliations as partitioned assets: one asset per job spec in the jobs folder, partitioned by
tenant (dynamic) and day. Materializing a partition reconciles that tenant's day as the service
identity; materializing it again supersedes the earlier run (read models count each job, tenant and day
once). A WARN check per partition flags a low or falling match rate.
"""

import os
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Final

import dagster as dg
import polars as pl

from dagster_project.catalog import OWNERS, Materialization
from dagster_project.resources import EventStoreResource, ReadModelsResource, default_data_dir
from settler_pipeline import projections
from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.adapters.loader import earliest_day
from settler_pipeline.application.access import AccessControl
from settler_pipeline.errors import NotFoundError, SettlerError
from settler_pipeline.jobspec import JobSpec, load_job_spec
from settler_pipeline.metrics import assess_match_rate
from settler_pipeline.settings import load_settings

GROUP: Final = "reconciliations"
TENANT_PARTITIONS: Final = "tenants"
TENANTS: Final = dg.DynamicPartitionsDefinition(name=TENANT_PARTITIONS)
FALLBACK_FIRST_DAY: Final = date(2026, 1, 1)


class MatchRatePolicy(dg.ConfigurableResource[Any]):
    """When a reconciliation's match rate earns a WARN: below ``threshold``, or more than ``max_drop``
    under the mean of the tenant's previous ``window`` completed runs of the job."""

    threshold: float = 0.8
    max_drop: float = 0.1
    window: int = 7


def job_spec_dir() -> Path:
    """Folder whose ``*.yaml`` job specs become reconciliation assets: the ``job_specs`` setting
    (``SETTLER_JOB_SPECS``), else ``<data dir>/jobs``."""
    configured = os.environ.get("SETTLER_JOB_SPECS")
    if configured:
        return Path(configured)
    return load_settings(data_dir=default_data_dir()).job_specs_dir


def asset_name(spec: JobSpec) -> str:
    """``reconciliation_<spec name>`` with the characters Dagster does not allow replaced by ``_``."""
    return "reconciliation_" + re.sub(r"[^A-Za-z0-9_]", "_", spec.name)


def spec_tenant(spec: JobSpec) -> str | None:
    """The name of the tenant ``spec`` names (its ``tenant_id``) when the access file knows it: the
    spec's asset is then partitioned by that tenant alone. ``None`` for a spec of any tenant."""
    if spec.tenant_id is None:
        return None
    tenants = AccessControl(load_settings(data_dir=default_data_dir()).data_dir).tenants()
    return next((t.name for t in tenants if t.tenant_id == spec.tenant_id), None)


@cache
def _first_day(path: Path, _mtime: float) -> date:
    spec = load_job_spec(path)
    settings = load_settings(data_dir=default_data_dir())
    roots = InputRoots.of(settings)
    # A spec's inputs may lie in one tenant's folder (a ``{tenant}`` input root): its first day is
    # the first that its own tenant's roots can read, or any tenant's for a spec of any tenant.
    own = spec_tenant(spec)
    tenants = [own] if own else [t.name for t in AccessControl(settings.data_dir).tenants()]
    for candidate in (roots, *(roots.for_tenant(name) for name in tenants)):
        try:
            return earliest_day(spec, candidate) or FALLBACK_FIRST_DAY
        except SettlerError:
            continue
    return FALLBACK_FIRST_DAY  # an unreadable input fails the partition's run, visibly, not the load


def first_day(path: Path) -> date:
    """The first daily partition of a spec: ``SETTLER_FIRST_DAY`` if set, else the earliest day in the
    data the spec reads."""
    configured = os.environ.get("SETTLER_FIRST_DAY")
    if configured:
        return date.fromisoformat(configured)
    return _first_day(path, path.stat().st_mtime)


def partitions(path: Path, own: str | None) -> dg.MultiPartitionsDefinition:
    """Tenant x day (keys like ``2026-11-02|acme``): every tenant (the dynamic ``tenants``
    partitions), or only the tenant the spec names, so no partition of another tenant is offered that
    could only fail on that tenant's input roots or permissions."""
    days = dg.DailyPartitionsDefinition(start_date=first_day(path).isoformat())
    tenants = TENANTS if own is None else dg.StaticPartitionsDefinition([own])
    return dg.MultiPartitionsDefinition({"day": days, "tenant": tenants})


def reconciliation_asset(path: Path, spec: JobSpec, own: str | None = None) -> dg.AssetsDefinition:
    """The partitioned asset of ``spec``, the job spec loaded from ``path``, partitioned by the tenant
    ``own`` alone when given (:func:`spec_tenant`), else by every tenant."""
    name = asset_name(spec)
    check = dg.AssetCheckSpec(
        "match_rate",
        asset=name,
        description="WARN when the partition's match rate is below the threshold or drops sharply from "
        "the tenant's recent average (MatchRatePolicy).",
    )

    keys = partitions(path, own)

    @dg.asset(
        name=name,
        partitions_def=keys,
        group_name=GROUP,
        description=f"Reconciliation of job spec `{spec.name}` ({path}): "
        f"{spec.source.adapter} against {spec.target.adapter}, one run per tenant and day. "
        "Materializing a partition again supersedes its earlier run; a day that a run over several "
        "days covers (one started with `settler reconcile --from --to`) fails instead, naming that "
        "run: re-run it whole with `--supersede`.",
        kinds={"polars", "parquet"},
        owners=OWNERS,
        code_version=spec.fingerprint()[:16],
        metadata={"job_spec": str(path)},
        check_specs=[check],
        tags={"settler/job_spec": spec.name},
    )
    def _reconciliation(
        context: dg.AssetExecutionContext,
        event_store: EventStoreResource,
        read_models: ReadModelsResource,
        match_rate_policy: MatchRatePolicy,
    ) -> Materialization:
        # a launch through the UI or `dagster asset materialize` gives the key by dimension; one tagged
        # with `dagster/partition` alone (GraphQL, a sensor's RunRequest) gives its text "day|tenant"
        key = context.partition_key
        # Dagster checks the key of a launch by dimension, not a text tag: a day past yesterday or
        # before the first, a tenant the asset is not partitioned by, or a malformed key would
        # otherwise reconcile, and be recorded under a partition the asset does not have.
        with dg.partition_loading_context(dynamic_partitions_store=context.instance):
            known = keys.has_partition_key(str(key))
        if not known:
            raise dg.Failure(
                description=f"{key} is not a partition of {name}: its keys are DAY|TENANT, a day from "
                f"{first_day(path)} to yesterday (UTC) and "
                + (f"the tenant {own}" if own else "a tenant of the `tenants` partitions"),
                allow_retries=False,
            )
        if not isinstance(key, dg.MultiPartitionKey):
            key = keys.get_partition_key_from_str(key)
        day = date.fromisoformat(key.keys_by_dimension["day"])
        tenant_name = key.keys_by_dimension["tenant"]
        with event_store.app() as app:
            context.instance.add_run_tags(context.run.run_id, {"settler/acting_user": app.user})
            try:
                tenant = app.tenant(tenant_name)
                replaced = [
                    r.reconciliation_id for r in app.service.live_runs(tenant.tenant_id, spec.name, day, day)
                ]
                outcome = app.reconcile(
                    path,
                    start=day,
                    end=day,
                    tenant=tenant_name,
                    # per Dagster run: a retried step repeats nothing, a new materialization supersedes
                    idempotency_key=f"dagster:{context.run.run_id}:{tenant.tenant_id}:{day}",
                    supersede=True,
                )
            except SettlerError as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
        if outcome.status == "failed":
            error = outcome.error or {}
            raise dg.Failure(
                description=f"reconciliation {outcome.reconciliation_id} failed at {error.get('step')}: "
                f"{error.get('message')}",
                metadata={"reconciliation_id": outcome.reconciliation_id},
                allow_retries=False,
            )
        summary = outcome.summary or {}
        recorded = summary.get("match_rate")  # None for an empty run (no source records that day)
        recent = _recent_rates(read_models, tenant.tenant_id, spec.name, day, match_rate_policy.window)
        reasons = (
            []
            if recorded is None
            else assess_match_rate(
                float(recorded),
                recent,
                threshold=match_rate_policy.threshold,
                max_drop=match_rate_policy.max_drop,
            )
        )
        rate = dg.MetadataValue.null() if recorded is None else float(recorded)
        # what the run leaves to review, as reconciliation_exceptions holds it (duplicates included)
        exceptions = sum(
            int(summary.get(k, 0) or 0)
            for k in ("unmatched_source_count", "unmatched_target_count", "proposed_count", "duplicate_count")
        )
        return dg.MaterializeResult(
            metadata={
                "reconciliation_id": outcome.reconciliation_id,
                "tenant": tenant_name,
                "day": day.isoformat(),
                "acting_user": app.user,
                "status": outcome.status,
                "supersedes": ", ".join(str(r) for r in replaced if r != outcome.reconciliation_id) or "none",
                "match_rate": rate,
                "matched": int(summary.get("matched_count", 0)),
                "exceptions": exceptions,
                "unmatched_source": int(summary.get("unmatched_source_count", 0)),
                "unmatched_target": int(summary.get("unmatched_target_count", 0)),
                "proposed": int(summary.get("proposed_count", 0)),
                "duplicates": int(summary.get("duplicate_count", 0) or 0),
                "quarantined": int(summary.get("quarantined_count", 0)),
                "events_appended": outcome.events_appended,
                "duration_ms": int(summary.get("duration_ms", 0)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="match_rate",
                    passed=not reasons,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "tenant": tenant_name,
                        "match_rate": rate,
                        "recent_average": round(sum(recent) / len(recent), 6)
                        if recent
                        else dg.MetadataValue.null(),  # no earlier run to average
                        "threshold": match_rate_policy.threshold,
                        "why": "; ".join(reasons) or "ok",
                    },
                )
            ],
        )

    return _reconciliation


def _recent_rates(
    read_models: ReadModelsResource, tenant_id: str, job_id: str, day: date, window: int
) -> list[float]:
    """Match rates of the tenant's completed runs of the job over the days before ``day`` (newest
    ``window``), from the published summary."""
    try:
        summary = projections.read_model(read_models.path(), "reconciliation_summary")
    except NotFoundError:
        return []
    earlier = (
        summary.filter(
            (pl.col("tenant_id") == tenant_id)
            & (pl.col("job_id") == job_id)
            & (pl.col("status") == "completed")
            & (pl.col("period_start") < day)
        )
        .sort("period_start")
        .tail(window)
    )
    return [float(r) for r in earlier["match_rate"].drop_nulls()]


@dataclass
class JobSpecAssets:
    """What the jobs folder yields: an asset, a job and a schedule per good spec; the broken ones."""

    folder: Path
    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)  # asset jobs (define_asset_job)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    paths: dict[Path, str] = field(default_factory=dict)  # spec file -> asset name
    spec_names: dict[Path, str] = field(default_factory=dict)  # spec file -> job id (the spec's name)
    spec_tenants: dict[Path, str] = field(default_factory=dict)  # spec file -> its one tenant, if any
    broken: dict[Path, str] = field(default_factory=dict)  # spec file -> what is wrong


def job_spec_assets(folder: Path | None = None) -> JobSpecAssets:
    """One reconciliation asset, asset job and daily schedule (02:00 UTC, for the day before; off until
    switched on) per job spec in ``folder``; a broken spec is listed, never fatal to the location."""
    folder = folder or job_spec_dir()
    found = JobSpecAssets(folder)
    # Asset keys the location defines besides these: a spec named `summary` must not take down the
    # whole location with a duplicate key (nor two specs of one name, a copy being edited).
    taken = {name: "a read model" for name in projections.NAMES}
    taken |= {"event_log": "the event log", "aggregate_snapshots": "the snapshots"}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            spec = load_job_spec(path)
            if (other := taken.get(asset_name(spec))) is not None:
                found.broken[path] = (
                    f"job name {spec.name!r} gives the asset {asset_name(spec)}, which is already {other}; "
                    "give each job spec a name of its own"
                )
                continue
            own = spec_tenant(spec)
            if spec.tenant_id is not None and own is None:
                # partitioned by every tenant instead, its runs would go to whichever tenant is picked
                found.broken[path] = (
                    f"tenant_id {spec.tenant_id} is no tenant of this data directory (`settler access "
                    "list` shows them); create the tenant or fix the id, then reload the code location"
                )
                continue
            asset = reconciliation_asset(path, spec, own)
        except SettlerError as exc:
            found.broken[path] = str(exc)
            continue
        taken[asset.key.path[-1]] = f"the asset of {path.name}"
        job = dg.define_asset_job(
            f"{asset.key.path[-1]}_job",
            selection=[asset.key],
            description=f"Reconcile {path.name} for a tenant and day (one partition per run).",
        )
        found.assets.append(asset)
        found.jobs.append(job)
        found.schedules.append(
            dg.build_schedule_from_partitioned_job(job, hour_of_day=2, name=f"{job.name}_schedule")  # type: ignore[arg-type]
        )
        found.paths[path.resolve()] = asset.key.path[-1]
        found.spec_names[path.resolve()] = spec.name
        if own is not None:
            found.spec_tenants[path.resolve()] = own
    return found
