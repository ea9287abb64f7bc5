"""``projection_status``: per read model, its checkpoint, the log's head, the lag and its row count,
published with the read models (the checkpoints analysts query, and the as-of time of derived ages).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow.parquet as pq

from settler_pipeline.projections.batch import TS
from settler_pipeline.projections.checkpoint import Checkpoint, Staged, read_checkpoint, stage_table
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.projection import Column, ReadModel, TableReadModel

STATUS_NAME: Final = "projection_status"
STATUS_COLUMNS: Final = (
    Column("name", pl.String(), "The read model."),
    Column("version", pl.Int64(), "Version of the read model's definition its rows were built with."),
    Column("checkpoint", pl.Int64(), "Last global position of the log applied to it."),
    Column("head", pl.Int64(), "The log's head position when it was last updated."),
    Column("lag", pl.Int64(), "head - checkpoint when it was last updated (events not yet applied)."),
    Column(
        "as_of_time",
        TS,
        "Newest event time applied (the reference time of reconciliation_exceptions.age_days).",
    ),
    Column("rows", pl.Int64(), "Rows in the read model."),
    Column("updated_at", TS, "When the read model was last written."),
)


def status_rows(
    root: Path, head: int, models: Sequence[ReadModel], known: dict[str, tuple[Checkpoint, int]]
) -> list[dict[str, Any]]:
    """Status of ``models``; ``known`` gives (checkpoint, rows) of those just written."""
    rows = []
    for read_model in models:
        checkpoint, count = known.get(read_model.name) or stored_checkpoint(root, read_model)
        if checkpoint.version != read_model.version:
            checkpoint, count = Checkpoint(read_model.name, read_model.version), 0
        rows.append(
            {
                "name": read_model.name,
                "version": checkpoint.version,
                "checkpoint": checkpoint.position,
                "head": head,
                "lag": head - checkpoint.position,
                "as_of_time": checkpoint.max_event_time,
                "rows": count,
                "updated_at": checkpoint.updated_at,
            }
        )
    return rows


def stored_checkpoint(root: Path, read_model: ReadModel) -> tuple[Checkpoint, int]:
    """The published checkpoint and row count of a read model (checkpoint 0 if never built)."""
    if isinstance(read_model, TableReadModel):
        path = root / f"{read_model.name}.parquet"
        checkpoint = read_checkpoint(path)
        if checkpoint is not None:
            return checkpoint, pq.read_metadata(path).num_rows
    else:
        manifest = Generations(root, read_model.name).manifest()
        if manifest is not None:
            rows = sum(int(p["rows"]) for p in manifest["parts"]) + int(
                manifest.get("log", {}).get("rows", 0)
            )
            return Checkpoint.from_dict(manifest["checkpoint"]), rows
    return Checkpoint(read_model.name, read_model.version), 0


def stage_status(root: Path, rows: list[dict[str, Any]]) -> Staged:
    """``projection_status`` (the checkpoints analysts query, and the as-of time of derived ages),
    staged to be published with the read models."""
    schema = {c.name: c.dtype for c in STATUS_COLUMNS}
    frame = pl.DataFrame(rows, schema=schema)
    head = max((int(r["head"]) for r in rows), default=0)
    return stage_table(
        root / f"{STATUS_NAME}.parquet", frame, Checkpoint(STATUS_NAME, 1, head, None, datetime.now(UTC))
    )
