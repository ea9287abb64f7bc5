"""A run's current state, loaded from its latest snapshot and the events after it.

A big run without a snapshot (a day of a million records) costs seconds to fold from its events, and
the write side loads the completed runs near a run's days at every completion and every review
decision (:mod:`settler_pipeline.application.shared_items`). So a load that folded many events leaves
a snapshot of what it found: the next load of that run reads the snapshot and the few events after
it. Snapshots are a cache of the log (the read side's asset builds them too); losing one costs time,
never data.
"""

from __future__ import annotations

import contextlib
from typing import Final

from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import StoreError

SNAPSHOT_AFTER_EVENTS: Final = 20_000
"""A load that folds at least this many events stores a snapshot of the state it found (a 20k-event
fold costs ~50 ms; storing the snapshot a few ms)."""


def load_run(
    store: EventLog, reconciliation_id: str, *, as_of_position: int | None = None
) -> ReconciliationState:
    """The run's state from its latest usable snapshot plus the events after it, as it stood at
    ``as_of_position`` when given (the latest otherwise). A current load that folded
    :data:`SNAPSHOT_AFTER_EVENTS` or more events stores a snapshot of the result, unless the store
    cannot be written (a read-only data directory)."""
    state = ReconciliationState()
    snapshot = store.get_latest_snapshot(
        reconciliation_id, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION
    )
    if snapshot is not None and (as_of_position is None or snapshot.global_position <= as_of_position):
        state = ReconciliationState.from_dict(snapshot.state)
    frame = store.stream_frame(
        reconciliation_id, e.AGGREGATE_TYPE, from_version=state.version + 1, as_of_position=as_of_position
    )
    state = agg.fold_frame(state, frame)
    if as_of_position is None and frame.height >= SNAPSHOT_AFTER_EVENTS:
        # a reader of a read-only copy (or a log opened for reading) simply folds again next time
        with contextlib.suppress(StoreError, OSError):
            store.save_snapshot(
                reconciliation_id,
                e.AGGREGATE_TYPE,
                state.version,
                state.to_dict(),
                schema_version=agg.SNAPSHOT_SCHEMA_VERSION,
                global_position=int(frame["global_position"].max()),  # type: ignore[arg-type]
            )
    return state
