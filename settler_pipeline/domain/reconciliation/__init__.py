"""The Reconciliation aggregate: a run's state, how events change it, and what commands decide.

* :mod:`.status` — :class:`RunStatus` and the groups of statuses the rules speak of;
* :mod:`.state` — :class:`ReconciliationState` (what a snapshot stores);
* :mod:`.builder` — :class:`StateBuilder`, :func:`evolve`, :func:`fold` (event by event);
* :mod:`.bulk` — the bulk fold (:func:`fold_frame`, :func:`fold_streams`), equal to :func:`fold`;
* :mod:`.decide` — the command decisions (pure; they return :class:`NewEvent` values);
* :mod:`.outcome` — how an attempt ends: its summary and match rate, or its failure;
* :mod:`.shared` — a decision on an item two runs share, recorded in both.

Exception ids are built and read by :mod:`settler_pipeline.domain.exception_ids`.
"""

from settler_pipeline.domain.events import NewEvent
from settler_pipeline.domain.reconciliation.builder import StateBuilder, evolve, fold
from settler_pipeline.domain.reconciliation.bulk import BULK_FIELDS, fold_frame, fold_states, fold_streams
from settler_pipeline.domain.reconciliation.decide import (
    decide_abandon,
    decide_cancel,
    decide_confirm,
    decide_dismiss,
    decide_manual_match,
    decide_reject,
    decide_retry,
    decide_start,
    decide_supersede,
    run_id_in_use,
)
from settler_pipeline.domain.reconciliation.outcome import (
    decide_completion,
    decide_failure,
    is_retryable,
    match_rate,
)
from settler_pipeline.domain.reconciliation.shared import DECISIONS, closed_by_matches, shared_decisions
from settler_pipeline.domain.reconciliation.state import SNAPSHOT_SCHEMA_VERSION, Counts, ReconciliationState
from settler_pipeline.domain.reconciliation.status import (
    ABANDONED,
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED,
    LIVE,
    NEW,
    RECORDED,
    RETRYABLE,
    RUNNING,
    STARTED,
    SUPERSEDED,
    RunStatus,
)

__all__ = [
    "ABANDONED",
    "BULK_FIELDS",
    "CANCELLED",
    "COMPLETED",
    "DECISIONS",
    "FAILED",
    "FINISHED",
    "LIVE",
    "NEW",
    "RECORDED",
    "RETRYABLE",
    "RUNNING",
    "SNAPSHOT_SCHEMA_VERSION",
    "STARTED",
    "SUPERSEDED",
    "Counts",
    "NewEvent",
    "ReconciliationState",
    "RunStatus",
    "StateBuilder",
    "closed_by_matches",
    "decide_abandon",
    "decide_cancel",
    "decide_completion",
    "decide_confirm",
    "decide_dismiss",
    "decide_failure",
    "decide_manual_match",
    "decide_reject",
    "decide_retry",
    "decide_start",
    "decide_supersede",
    "evolve",
    "fold",
    "fold_frame",
    "fold_states",
    "fold_streams",
    "is_retryable",
    "match_rate",
    "run_id_in_use",
    "shared_decisions",
]
