"""Operational metrics of a data directory: how fast events arrive, how far the read models lag, how
often snapshots are taken, how big the store is and how fast the analyst database answers.

One function, :func:`operational_metrics`, used by ``settler stats`` and attached to every Dagster
materialization (so Dagster plots each figure over time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from settler_pipeline import projections
from settler_pipeline.errors import NotFoundError
from settler_pipeline.store import maintenance
from settler_pipeline.store.event_store import EventStore

RATE_WINDOW: Final = timedelta(hours=1)


def operational_metrics(store: EventStore, data_dir: str | Path | None = None) -> dict[str, float | int]:
    """Numbers only (so dashboards can plot them):

    * ``event_append_rate_per_min``: events committed in the last hour, per minute;
    * ``projection_lag_max``: events not yet in the furthest-behind read model (live head);
    * ``snapshots_total`` and ``events_per_snapshot`` (head / snapshots: how often one is taken);
    * ``event_store_bytes``: segments + write-ahead tail + index + snapshots;
    * ``read_model_query_ms``: a count over ``reconciliation_summary`` through the analyst database
      (-1 before the read models exist)."""
    root = Path(data_dir) if data_dir is not None else store.data_dir
    stats = maintenance.stats(store)
    head = int(stats["head_position"])
    recent = head - store.position_at(datetime.now(UTC) - RATE_WINDOW)
    lag = max((int(s["lag"]) for s in projections.status(store, root)), default=0)
    snapshots = store.snapshots.count()
    started = time.perf_counter()
    try:
        projections.sql(root, "SELECT count(*) FROM reconciliation_summary")
        query_ms = round((time.perf_counter() - started) * 1000, 2)
    except NotFoundError:
        query_ms = -1.0
    return {
        "event_append_rate_per_min": round(recent / (RATE_WINDOW.total_seconds() / 60), 3),
        "projection_lag_max": lag,
        "snapshots_total": snapshots,
        "events_per_snapshot": round(head / snapshots, 1) if snapshots else 0.0,
        "event_store_bytes": int(
            stats["segment_bytes"] + stats["wal_bytes"] + stats["index_bytes"] + stats["snapshot_bytes"]
        ),
        "read_model_query_ms": query_ms,
    }


def assess_match_rate(
    rate: float, recent: Sequence[float], *, threshold: float, max_drop: float
) -> list[str]:
    """Why a run's match rate deserves a warning (empty: it does not): below ``threshold``, or more
    than ``max_drop`` under the mean of ``recent`` (the tenant's previous runs of the same job)."""
    reasons = []
    if rate < threshold:
        reasons.append(f"match rate {rate:.1%} is below the threshold {threshold:.1%}")
    if recent:
        average = sum(recent) / len(recent)
        if average - rate > max_drop:
            reasons.append(
                f"match rate {rate:.1%} dropped {average - rate:.1%} below the recent average {average:.1%} "
                f"of {len(recent)} runs (allowed: {max_drop:.1%})"
            )
    return reasons
