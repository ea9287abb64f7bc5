"""Read models and snapshots, built from the event log with Polars and published for analysts.

Plain functions taking an :class:`~settler_pipeline.store.event_store.EventStore` (and optionally the
data directory, by default the store's):

* :func:`update` — apply the events after each read model's checkpoint and publish;
* :func:`rebuild` — recompute from position 0 (same rows);
* :func:`as_of` — a read model at a past position or time, computed in memory (time travel);
* :func:`status` — per read model: checkpoint, head and lag;
* :func:`read_model` — the published rows of one read model (:func:`scan_read_model`: lazily);
* :func:`fold_batches` — a read model over given batches of events, in memory (tests, notebooks);
* :func:`sql` — query the analyst database (``<data_dir>/analytics.duckdb``) read-only;
* :func:`build_snapshots` — aggregate snapshots for every run that crossed a multiple of ``every``.

See ``docs/read-models.md`` for every table and column.
"""

from __future__ import annotations

from settler_pipeline.projections.publisher import ANALYTICS_DB, sql
from settler_pipeline.projections.runner import (
    NAMES,
    READ_MODELS,
    as_of,
    fold_batches,
    is_built,
    logged_currencies,
    model,
    published,
    read_model,
    read_models_dir,
    rebuild,
    scan_read_model,
    status,
    update,
)
from settler_pipeline.projections.snapshots import build_snapshots, streams_needing_snapshots

__all__ = [
    "ANALYTICS_DB",
    "NAMES",
    "READ_MODELS",
    "as_of",
    "build_snapshots",
    "fold_batches",
    "is_built",
    "logged_currencies",
    "model",
    "published",
    "read_model",
    "read_models_dir",
    "rebuild",
    "scan_read_model",
    "sql",
    "status",
    "streams_needing_snapshots",
    "update",
]
