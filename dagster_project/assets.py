"""Assets: the event log (observed), aggregate snapshots, and the read models (all five updated by one
multi-asset from one read of the new events), with their checks and freshness checks.

Assets do their own I/O through resources and return ``MaterializeResult`` with metadata: the
DataFrame IO managers do not work with DuckDB 2 / Polars 2 (see docs/architecture.md). Every
materialization carries the operational metrics (``settler_pipeline.metrics``) so Dagster plots them.
"""

import re
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, Final

import dagster as dg
import polars as pl

from dagster_project.catalog import KINDS, OWNERS, Materialization, markdown_preview, table_schema
from dagster_project.resources import EventStoreResource, ReadModelsResource
from settler_pipeline import projections
from settler_pipeline.application.access import AccessControl
from settler_pipeline.domain import events as e
from settler_pipeline.domain.reconciliation import SNAPSHOT_SCHEMA_VERSION
from settler_pipeline.metrics import operational_metrics
from settler_pipeline.projections.runner import READ_MODELS
from settler_pipeline.store import maintenance

GROUP: Final = "read_models"
EVENT_LOG: Final = dg.AssetKey("event_log")
SNAPSHOTS: Final = dg.AssetKey("aggregate_snapshots")
SNAPSHOT_EVERY: Final = 100
READ_MODEL_KEYS: Final = [dg.AssetKey(m.name) for m in READ_MODELS]
# Read models follow the log within a minute; a day and more without an update means the sensor or the
# daemon is off (or nothing happened at all, which a daily schedule makes unusual).
FRESHNESS: Final = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=48), warn_window=timedelta(hours=26)
)

# Columns that count things or measure durations: never negative. (Amounts may be: refunds.)
_NON_NEGATIVE = re.compile(
    r"(count|^runs_|records|^matched|^proposed|^unmatched|quarantined|duplicates|errors"
    r"|duration|age_days|^attempt$)"
)

# Columns that are shares or scores: within [0, 1] (a match's confidence is its rule's score).
_UNIT_INTERVAL: Final = {"match_rate", "confidence"}


event_log: Final = dg.AssetSpec(
    EVENT_LOG,
    group_name="event_log",
    description="The append-only event log (Parquet segments + write-ahead tail). Observed by "
    "event_log_sensor whenever its head moves (the head position is in the observation's metadata); "
    "written by the reconciliations and every command, never materialized here.",
    kinds={"parquet", "duckdb"},
    owners=OWNERS,
)


def observe_event_log(store: Any) -> tuple[int, dict[str, Any]]:
    """The log's head position and what an observation of ``event_log`` records."""
    started = time.perf_counter()
    stats = maintenance.stats(store)
    return int(stats["head_position"]), {
        "head_position": stats["head_position"],
        "segments": stats["segments"],
        "event_store_bytes": stats["segment_bytes"] + stats["wal_bytes"] + stats["index_bytes"],
        "wal_events": stats["wal_events"],
        "observe_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def snapshots_asset(upstream: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """``aggregate_snapshots``, downstream of the log and of ``upstream`` (the reconciliations)."""

    @dg.asset(
        key=SNAPSHOTS,
        group_name=GROUP,
        deps=[EVENT_LOG, *upstream],
        description=f"Aggregate snapshots of reconciliation runs, every {SNAPSHOT_EVERY} events per stream "
        "(built in bulk with Polars; an old snapshot schema is rebuilt, never misread).",
        kinds={"polars", "duckdb"},
        owners=OWNERS,
        code_version=f"schema-{SNAPSHOT_SCHEMA_VERSION}-every-{SNAPSHOT_EVERY}",
    )
    def aggregate_snapshots(event_store: EventStoreResource) -> Materialization:
        started = time.perf_counter()
        with event_store.open() as store:
            built = projections.build_snapshots(store, every=SNAPSHOT_EVERY)
            total = store.snapshots.count()
            head = store.head_position
            metrics = operational_metrics(store)
        return dg.MaterializeResult(
            metadata={
                "snapshots_built": built,
                "snapshots_total": total,
                "snapshot_every": SNAPSHOT_EVERY,
                "head_position": head,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                **metrics,
            }
        )

    return aggregate_snapshots


def _check_specs() -> list[dg.AssetCheckSpec]:
    specs = []
    for model in READ_MODELS:
        specs.append(
            dg.AssetCheckSpec(
                f"check_{model.name}_lag",
                asset=model.name,
                description="The update reached the head it read (lag 0 at that head; later appends are "
                "the next update's, reported as events_since).",
            )
        )
        specs.append(
            dg.AssetCheckSpec(
                f"check_{model.name}_values",
                asset=model.name,
                description="No negative counts; match rates and confidences within [0, 1].",
            )
        )
    specs.append(
        dg.AssetCheckSpec(
            "check_reconciliation_summary_totals",
            asset="reconciliation_summary",
            description="One summary row per run started in the log (up to the read model's checkpoint).",
        )
    )
    specs.append(
        dg.AssetCheckSpec(
            "check_tenant_usage_view_totals",
            asset="tenant_usage_view",
            description="Runs started per tenant and day add up to the ReconciliationStarted events.",
        )
    )
    return specs


def read_models_asset(upstream: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The five read models as one multi-asset: one update applies the new events to all of them (one
    read and decode of the log), then each gets its own materialization and checks."""
    specs = [
        dg.AssetSpec(
            model.name,
            deps=[EVENT_LOG, *upstream],
            group_name=GROUP,
            description=model.doc,
            kinds=KINDS,
            owners=OWNERS,
            code_version=f"v{model.version}",
            freshness_policy=FRESHNESS,
            metadata={
                "dagster/column_schema": table_schema(model.columns),
                "dagster/table_name": f"analytics.{model.name}",
            },
        )
        for model in READ_MODELS
    ]

    @dg.multi_asset(
        name="read_models",
        specs=specs,
        check_specs=_check_specs(),
        description="Bring every read model up to the log's head in one pass (incremental) and publish.",
    )
    def read_models(
        event_store: EventStoreResource, read_models: ReadModelsResource
    ) -> Iterator[Materialization]:
        root = read_models.path()
        with event_store.open() as store:
            before = {s["name"]: int(s["checkpoint"]) for s in projections.status(store, root)}
            started = time.perf_counter()
            names = AccessControl(store.data_dir).tenant_names()
            rows = {s["name"]: s for s in projections.update(store, root, tenant_names=names)}
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            live_head = store.head_position
            # Read as of one update, which may be a later one: another run waiting on the update lock
            # publishes as soon as this one lets go. Checks and metadata judge the rows read, at the
            # checkpoint they were published with.
            frames, shown = projections.published(store, root)
            shown_at = {s["name"]: int(s["checkpoint"]) for s in shown}
            checkpoint = min(shown_at.values())
            starts = (
                store.read(to_position=checkpoint, event_types=[e.RECONCILIATION_STARTED])
                .select("aggregate_id")
                .collect()["aggregate_id"]
            )
            metrics = operational_metrics(store, root)
        for model in READ_MODELS:
            status = rows[model.name]
            frame = frames[model.name]
            checks = [
                dg.AssetCheckResult(
                    asset_key=model.name,
                    check_name=f"check_{model.name}_lag",
                    passed=int(status["lag"]) == 0,
                    metadata={
                        "lag": int(status["lag"]),
                        "checkpoint": int(status["checkpoint"]),
                        "head": int(status["head"]),
                        "events_since": live_head - int(status["checkpoint"]),
                    },
                ),
                _values_result(model.name, frame),
                *_totals_results(model.name, frame, starts),
            ]
            yield dg.MaterializeResult(
                asset_key=model.name,
                metadata={
                    "dagster/row_count": frame.height,
                    "preview": dg.MetadataValue.md(markdown_preview(frame)),
                    "checkpoint": shown_at[model.name],  # of the rows counted and previewed
                    "head_position": int(status["head"]),
                    "projection_lag": int(status["lag"]),
                    "events_applied": int(status["checkpoint"]) - before.get(model.name, 0),
                    "duration_ms": duration_ms,
                    **metrics,
                },
                check_results=checks,
            )

    return read_models


def _values_result(name: str, frame: pl.DataFrame) -> dg.AssetCheckResult:
    problems = impossible_values(frame)
    return dg.AssetCheckResult(
        asset_key=name,
        check_name=f"check_{name}_values",
        passed=not problems,
        metadata={"problems": ", ".join(problems) or "none"},
    )


def _totals_results(name: str, frame: pl.DataFrame, starts: pl.Series) -> list[dg.AssetCheckResult]:
    if name == "reconciliation_summary":
        runs = starts.n_unique()
        return [
            dg.AssetCheckResult(
                asset_key=name,
                check_name="check_reconciliation_summary_totals",
                passed=frame.height == runs,
                metadata={"runs_in_log": runs, "rows": frame.height},
            )
        ]
    if name == "tenant_usage_view":
        total = int(frame["runs_started"].sum()) if frame.height else 0
        return [
            dg.AssetCheckResult(
                asset_key=name,
                check_name="check_tenant_usage_view_totals",
                passed=total == starts.len(),
                metadata={"events": starts.len(), "runs_started": total},
            )
        ]
    return []


def impossible_values(frame: pl.DataFrame) -> list[str]:
    """Columns of ``frame`` holding values that cannot be: negative counts, rates or scores outside
    [0, 1]."""
    problems = []
    for column, dtype in frame.schema.items():
        if dtype.is_numeric() and _NON_NEGATIVE.search(column) and frame.height:
            low = frame[column].min()
            if low is not None and float(low) < 0:  # type: ignore[arg-type]
                problems.append(f"{column} < 0")
        if column in _UNIT_INTERVAL and frame.height:
            rates = frame[column].drop_nulls()
            if rates.len() and (float(rates.min()) < 0 or float(rates.max()) > 1):  # type: ignore[arg-type]
                problems.append(f"{column} outside [0, 1]")
    return problems
