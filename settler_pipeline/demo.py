"""The demo behind `make demo`: exercises the event log for real on a data directory."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.ids import new_id, new_ids
from settler_pipeline.store import maintenance
from settler_pipeline.store.event_store import EventStore


def run_store_demo(
    data_dir: Path, *, runs: int = 3, matches_per_run: int = 50_000, seed: int = 7
) -> dict[str, Any]:
    """Append ``runs`` reconciliation runs' worth of events (commands as small commits, the matcher's
    output as columnar batches), read them back and return what was observed."""
    rng = np.random.default_rng(seed)
    tenant = new_id()
    started = time.perf_counter()
    appended = 0
    with EventStore.open(data_dir) as store:
        head_before = store.head_position
        for run in range(runs):
            run_id, correlation = new_id(), new_id()
            day = datetime.now(UTC) - timedelta(days=runs - run)
            start = EventEnvelope(
                aggregate_id=run_id,
                aggregate_type="reconciliation",
                event_type="ReconciliationStarted",
                data={
                    "job_id": "stripe-vs-bank",
                    "source_adapter": "csv",
                    "target_adapter": "csv",
                    "date_range": {"start": day.date().isoformat(), "end": day.date().isoformat()},
                    "initiated_by": "demo",
                },
                metadata=EventMetadata(
                    tenant_id=tenant, user_id="demo", correlation_id=correlation, timestamp=day
                ),
            )
            store.append([start], expected_versions={run_id: 0})
            amounts = rng.integers(100, 500_000, matches_per_run)
            matches = pl.DataFrame(
                {
                    "aggregate_id": run_id,
                    "aggregate_type": "reconciliation",
                    "event_type": "RecordMatched",
                    "data": [
                        json.dumps(
                            {
                                "match_id": f"m{run}-{i}",
                                "amount": int(a),
                                "currency": "EUR",
                                "rule": "reference",
                                "confidence": 1.0,
                            }
                        )
                        for i, a in enumerate(amounts)
                    ],
                    "tenant_id": tenant,
                    "correlation_id": correlation,
                    "causation_id": start.id,
                    "timestamp": day,
                }
            ).with_columns(new_ids(matches_per_run))
            store.append_frame(matches, expected_versions={run_id: 1})
            done = EventEnvelope(
                aggregate_id=run_id,
                aggregate_type="reconciliation",
                event_type="ReconciliationCompleted",
                data={"summary": {"matched_count": matches_per_run}},
                metadata=EventMetadata(
                    tenant_id=tenant,
                    user_id="demo",
                    correlation_id=correlation,
                    causation_id=start.id,
                    timestamp=day,
                ),
            )
            store.append([done], expected_versions={run_id: 1 + matches_per_run})
            appended += matches_per_run + 2
        read_started = time.perf_counter()
        frame = store.read(from_position=head_before).collect()
        read_s = time.perf_counter() - read_started
        report = maintenance.verify(store)
        stats = maintenance.stats(store)
    return {
        "data_dir": str(data_dir.resolve()),
        "events_appended": appended,
        "events_read_back": frame.height,
        "append_and_read_seconds": round(time.perf_counter() - started, 2),
        "read_seconds": round(read_s, 3),
        "head_position": stats["head_position"],
        "segments": stats["segments"],
        "log_verified": report.ok,
        "events_by_type": stats["events_by_type"],
    }
