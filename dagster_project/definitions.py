"""The Dagster code location: wiring only; the logic lives in ``settler_pipeline``."""

from __future__ import annotations

import dagster as dg

from dagster_project.resources import EventStoreResource


@dg.asset(description="Size and shape of the event log (events, segments, bytes) as metadata.")
def event_log_stats(event_store: EventStoreResource) -> dg.MaterializeResult:
    from settler_pipeline.store import maintenance

    with event_store.open() as store:
        stats = maintenance.stats(store)
    return dg.MaterializeResult(
        metadata={
            "head_position": stats["head_position"],
            "segments": stats["segments"],
            "segment_bytes": stats["segment_bytes"],
            "wal_events": stats["wal_events"],
        }
    )


defs = dg.Definitions(
    assets=[event_log_stats],
    resources={"event_store": EventStoreResource()},
)
