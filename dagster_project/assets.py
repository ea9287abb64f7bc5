"""Assets: the event log (observed), aggregate snapshots and the read models (materialized
incrementally by the library), their checks, and the sensor that keeps them fresh.

Assets do their own I/O through resources and return ``MaterializeResult`` with metadata: the
DataFrame IO managers do not work with DuckDB 2 / Polars 2 (see docs/architecture.md).
"""

import re
import time
from collections.abc import Sequence
from typing import Any

import dagster as dg
import polars as pl

from dagster_project.resources import EventStoreResource, ReadModelsResource
from settler_pipeline import projections
from settler_pipeline.domain import events as e
from settler_pipeline.errors import NotFoundError
from settler_pipeline.store import maintenance

GROUP = "read_models"
EVENT_LOG = dg.AssetKey("event_log")
SNAPSHOT_EVERY = 100


@dg.observable_source_asset(
    key=EVENT_LOG,
    group_name="event_log",
    description="The append-only event log (Parquet segments + write-ahead tail). Its data version is the "
    "head position, so downstream assets know when new events arrived.",
)
def event_log(event_store: EventStoreResource) -> dg.ObserveResult:
    started = time.perf_counter()
    with event_store.open(read_only=True) as store:
        stats = maintenance.stats(store)
    return dg.ObserveResult(
        data_version=dg.DataVersion(str(stats["head_position"])),
        metadata={
            "head_position": stats["head_position"],
            "segments": stats["segments"],
            "event_store_bytes": stats["segment_bytes"] + stats["wal_bytes"] + stats["index_bytes"],
            "wal_events": stats["wal_events"],
            "observe_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )


@dg.asset(
    group_name=GROUP,
    deps=[EVENT_LOG],
    description=f"Aggregate snapshots of reconciliation runs, every {SNAPSHOT_EVERY} events per stream "
    "(built in bulk with Polars; an old snapshot schema is rebuilt, never misread).",
    automation_condition=dg.AutomationCondition.eager(),
)
def aggregate_snapshots(event_store: EventStoreResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    with event_store.open() as store:
        built = projections.build_snapshots(store, every=SNAPSHOT_EVERY)
        total = store.snapshots.count()
        head = store.head_position
    return dg.MaterializeResult(
        metadata={
            "snapshots_built": built,
            "snapshots_total": total,
            "snapshot_every": SNAPSHOT_EVERY,
            "head_position": head,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    )


def _read_model_asset(name: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name=GROUP,
        deps=[EVENT_LOG],
        description=description,
        automation_condition=dg.AutomationCondition.eager(),
    )
    def _asset(event_store: EventStoreResource, read_models: ReadModelsResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        with event_store.open() as store:
            before = {s["name"]: s for s in projections.status(store, read_models.path())}.get(name, {})
            after = {s["name"]: s for s in projections.update(store, read_models.path(), names=[name])}[name]
        duration = time.perf_counter() - started
        query_started = time.perf_counter()
        rows = projections.sql(read_models.path(), f"SELECT count(*) AS n FROM {name}")["n"][0]  # noqa: S608
        return dg.MaterializeResult(
            metadata={
                "rows": int(rows),
                "checkpoint": int(after["checkpoint"]),
                "head_position": int(after["head"]),
                "projection_lag": int(after["lag"]),
                "events_applied": int(after["checkpoint"]) - int(before.get("checkpoint", 0) or 0),
                "duration_ms": round(duration * 1000, 1),
                "read_model_query_ms": round((time.perf_counter() - query_started) * 1000, 1),
            }
        )

    return _asset


READ_MODEL_DESCRIPTIONS = {
    "reconciliation_summary": "One row per run: status, totals, matches, exceptions, match rate.",
    "tenant_usage_view": "Tenant x day (event time): runs started, completed, failed, cancelled; records.",
    "error_hotspots_view": "Tenant x error type x step: count, first/last seen, a sample message.",
    "reconciliation_exceptions": "Open review items: unmatched, ambiguous, proposed, duplicate, quarantined.",
    "reconciliation_matches": "One row per match (auto, proposed, confirmed, manual) for audits.",
}
read_model_assets = [_read_model_asset(n, d) for n, d in READ_MODEL_DESCRIPTIONS.items()]

# Columns that count things or measure durations: never negative. (Amounts may be: refunds.)
_NON_NEGATIVE = re.compile(
    r"(count|^runs_|records|^matched|^proposed|^unmatched|quarantined|duplicates|errors"
    r"|duration|age_days|^attempt$)"
)


def _lag_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=name, name=f"check_{name}_lag", description="Projection lag is zero after update.")
    def _check(event_store: EventStoreResource, read_models: ReadModelsResource) -> dg.AssetCheckResult:
        with event_store.open() as store:
            entry = _status(store, read_models, name)
        return dg.AssetCheckResult(
            passed=int(entry["lag"]) == 0,
            metadata={
                "lag": int(entry["lag"]),
                "checkpoint": int(entry["checkpoint"]),
                "head": int(entry["head"]),
            },
        )

    return _check


def _values_check(name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=name, name=f"check_{name}_values", description="No negative counts; match rates within [0, 1]."
    )
    def _check(read_models: ReadModelsResource) -> dg.AssetCheckResult:
        frame = projections.read_model(read_models.path(), name)
        problems = _impossible_values(frame)
        return dg.AssetCheckResult(passed=not problems, metadata={"problems": ", ".join(problems) or "none"})

    return _check


def _impossible_values(frame: pl.DataFrame) -> list[str]:
    problems = []
    for column, dtype in frame.schema.items():
        if dtype.is_numeric() and _NON_NEGATIVE.search(column) and frame.height:
            low = frame[column].min()
            if low is not None and float(low) < 0:  # type: ignore[arg-type]
                problems.append(f"{column} < 0")
        if column == "match_rate" and frame.height:
            rates = frame[column].drop_nulls()
            if rates.len() and (float(rates.min()) < 0 or float(rates.max()) > 1):  # type: ignore[arg-type]
                problems.append("match_rate outside [0, 1]")
    return problems


def _status(store: Any, read_models: ReadModelsResource, name: str) -> dict[str, Any]:
    """The projection status row of one read model."""
    return {s["name"]: s for s in projections.status(store, read_models.path())}[name]


def _runs_started(event_store: EventStoreResource, read_models: ReadModelsResource, name: str) -> pl.Series:
    """Stream ids of the ReconciliationStarted events up to read model ``name``'s checkpoint."""
    with event_store.open() as store:
        checkpoint = int(_status(store, read_models, name)["checkpoint"])
        started = store.read(to_position=checkpoint, event_types=[e.RECONCILIATION_STARTED])
        return started.select("aggregate_id").collect()["aggregate_id"]


@dg.asset_check(
    asset="reconciliation_summary",
    name="check_reconciliation_summary_totals",
    description="One summary row per run started in the log (up to the read model's checkpoint).",
)
def check_reconciliation_summary_totals(
    event_store: EventStoreResource, read_models: ReadModelsResource
) -> dg.AssetCheckResult:
    summary = projections.read_model(read_models.path(), "reconciliation_summary")
    runs = _runs_started(event_store, read_models, "reconciliation_summary").n_unique()
    return dg.AssetCheckResult(
        passed=summary.height == runs, metadata={"runs_in_log": runs, "rows": summary.height}
    )


@dg.asset_check(
    asset="tenant_usage_view",
    name="check_tenant_usage_view_totals",
    description="Runs started per tenant and day add up to the ReconciliationStarted events in the log.",
)
def check_tenant_usage_view_totals(
    event_store: EventStoreResource, read_models: ReadModelsResource
) -> dg.AssetCheckResult:
    usage = projections.read_model(read_models.path(), "tenant_usage_view")
    started = _runs_started(event_store, read_models, "tenant_usage_view").len()
    total = int(usage["runs_started"].sum()) if usage.height else 0
    return dg.AssetCheckResult(passed=total == started, metadata={"events": started, "runs_started": total})


checks: Sequence[dg.AssetChecksDefinition] = [
    *(_lag_check(n) for n in READ_MODEL_DESCRIPTIONS),
    *(_values_check(n) for n in READ_MODEL_DESCRIPTIONS),
    check_reconciliation_summary_totals,
    check_tenant_usage_view_totals,
]

read_models_job = dg.define_asset_job(
    "read_models_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Bring snapshots and every read model up to the log's head (incremental).",
)


@dg.sensor(job=read_models_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def event_log_sensor(context: dg.SensorEvaluationContext, event_store: EventStoreResource) -> dg.SensorResult:
    """Requests an incremental update of the read models whenever the log's head moves."""
    try:
        with event_store.open(read_only=True) as store:
            head = store.head_position
    except NotFoundError:
        return dg.SensorResult(skip_reason=f"no Settler data at {event_store.path()} yet")
    last = int(context.cursor or 0)
    if head <= last:
        return dg.SensorResult(skip_reason=f"no new events (head {head})")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"head-{head}")], cursor=str(head))
