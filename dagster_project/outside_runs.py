"""Runs made outside Dagster (the ``settler`` CLI, the Python API, the demo), reported to Dagster: a
completed run of a job spec's tenant and days is what materializing those partitions of the spec's
reconciliation asset would have recorded, so the catalog shows them as materialized instead of
"0% filled". Each is reported once, as a runless materialization that names the run, and again
when a later run supersedes it (so the partition names the run that counts).
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from dagster_project.reconciliations import TENANT_PARTITIONS, JobSpecAssets, first_day
from settler_pipeline import projections
from settler_pipeline.application.access import AccessControl
from settler_pipeline.errors import NotFoundError

DESCRIPTION = "Reconciled outside Dagster (settler CLI or Python API); the run is in the event log."


def outside_materializations(
    instance: dg.DagsterInstance, data_dir: Path, found: JobSpecAssets
) -> list[dg.AssetMaterialization]:
    """A materialization for every partition (tenant x day) of ``found``'s assets that a completed,
    live run in the published ``reconciliation_summary`` covers and Dagster has no materialization
    of yet, or whose newest materialization names a run that summary shows superseded. Partitions
    outside an asset's days, tenants Dagster does not know, and runs of another tenant than the one a
    spec names are left out."""
    try:
        summary = projections.read_model(data_dir, "reconciliation_summary")
    except NotFoundError:
        return []
    completed = summary.filter(pl.col("status") == "completed")
    # A run counts as replaced once the read model says so. A run it does not know yet is newer than
    # the read model (a Dagster materialization whose update has not run): the partition stays as it is.
    superseded = set(summary.filter(pl.col("status") == "superseded")["reconciliation_id"])
    tenants = {t.tenant_id: t.name for t in AccessControl(data_dir).tenants()}
    known_tenants = set(instance.get_dynamic_partitions(TENANT_PARTITIONS))
    today = datetime.now(UTC).date()  # daily partitions are UTC days
    events: list[dg.AssetMaterialization] = []
    for path, asset_name in sorted(found.paths.items()):
        job_id = found.spec_names.get(path)
        runs = completed.filter(pl.col("job_id") == job_id)
        if job_id is None or runs.is_empty():
            continue
        key = dg.AssetKey(asset_name)
        done = instance.get_materialized_partitions(key)
        named = _runs_named(instance, key)
        first = first_day(path)
        own = found.spec_tenants.get(path)  # the asset's one tenant, or None for the dynamic ones
        for row in runs.iter_rows(named=True):
            tenant = tenants.get(row["tenant_id"])
            if tenant is None or (tenant != own if own else tenant not in known_tenants):
                continue
            day: date = row["period_start"]
            while day <= row["period_end"]:
                partition = str(dg.MultiPartitionKey({"day": day.isoformat(), "tenant": tenant}))
                # new, or materialized for a run this one superseded (a CLI `--supersede`)
                replaced = named.get(partition) in superseded
                if first <= day < today and (partition not in done or replaced):
                    events.append(_materialization(key, partition, tenant, day, row))
                day += timedelta(days=1)
    return events


def _runs_named(instance: dg.DagsterInstance, key: dg.AssetKey, limit: int = 1_000) -> dict[str, str]:
    """The run each partition's newest materialization names, over the asset's newest ``limit``
    materializations (partitions materialized longer ago are left as they are)."""
    named: dict[str, str] = {}
    for record in instance.fetch_materializations(key, limit=limit).records:
        event = record.asset_materialization
        if event is None or event.partition is None or event.partition in named:
            continue
        value = event.metadata.get("reconciliation_id")
        if value is not None:
            named[event.partition] = str(getattr(value, "value", value))
    return named


def _materialization(
    key: dg.AssetKey, partition: str, tenant: str, day: date, row: dict[str, object]
) -> dg.AssetMaterialization:
    rate = row["match_rate"]
    return dg.AssetMaterialization(
        asset_key=key,
        partition=partition,
        description=DESCRIPTION,
        metadata={
            "reconciliation_id": str(row["reconciliation_id"]),
            "tenant": tenant,
            "day": day.isoformat(),
            "status": "completed",
            "match_rate": dg.MetadataValue.null() if rate is None else float(rate),  # type: ignore[arg-type]
            "matched": int(row["matched"] or 0),  # type: ignore[call-overload]
            "recorded_outside_dagster": True,
        },
    )
