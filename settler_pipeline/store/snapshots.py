"""Aggregate snapshots: a stream's folded state after some version, stored beside the log.

Snapshots are a cache (the log can always rebuild them), so they live in their own DuckDB file and
survive ``reindex``. Each carries the schema version of its state: a reader asks for the version its
code understands and treats any other as absent, so an old snapshot is rebuilt, never misread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.store.database import DuckDBFile

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS idx.snapshots(
    aggregate_id UUID, aggregate_type VARCHAR, aggregate_version BIGINT, schema_version INTEGER,
    global_position BIGINT, state JSON, created_at TIMESTAMPTZ);
"""


@dataclass(frozen=True)
class Snapshot:
    """A stream's state after ``aggregate_version`` (which was at ``global_position`` in the log)."""

    aggregate_id: str
    aggregate_type: str
    aggregate_version: int
    schema_version: int
    global_position: int
    state: dict[str, Any]
    created_at: datetime


class SnapshotStore(DuckDBFile):
    """The snapshot database of one log."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        super().__init__(
            path,
            SCHEMA_SQL,
            what="snapshot store",
            read_only=read_only,
            missing_ok=True,
            # snapshots only save replaying events: losing them loses nothing
            fix=f"delete {path} (snapshots are a cache of the log); `settler snapshot` builds them again",
        )

    def save(self, snapshot: Snapshot) -> None:
        """Store one snapshot."""
        self.save_frame(
            pl.DataFrame(
                {
                    "aggregate_id": [snapshot.aggregate_id],
                    "aggregate_type": [snapshot.aggregate_type],
                    "aggregate_version": [snapshot.aggregate_version],
                    "schema_version": [snapshot.schema_version],
                    "global_position": [snapshot.global_position],
                    "state": [json.dumps(snapshot.state, sort_keys=True, default=str)],
                    "created_at": [snapshot.created_at],
                }
            )
        )

    def save_frame(self, frame: pl.DataFrame) -> int:
        """Store many snapshots at once (columns as :class:`Snapshot`, ``state`` as JSON text).
        Returns how many were stored."""
        with self.writing() as con:
            con.register("new_snapshots", frame.to_arrow())
            try:
                con.execute(
                    "INSERT INTO idx.snapshots SELECT aggregate_id::UUID, aggregate_type, aggregate_version, "
                    "schema_version, global_position, state::JSON, created_at::TIMESTAMPTZ FROM new_snapshots"
                )
            finally:
                con.unregister("new_snapshots")
        return frame.height

    def latest(self, aggregate_id: str, aggregate_type: str, schema_version: int | None) -> Snapshot | None:
        """The newest snapshot of one stream (of ``schema_version`` when given)."""
        rows = self.query(
            "SELECT aggregate_version, schema_version, global_position, state::VARCHAR, created_at "
            "FROM idx.snapshots WHERE aggregate_id = $1::UUID AND aggregate_type = $2 "
            "AND ($3::INTEGER IS NULL OR schema_version = $3) "
            "ORDER BY aggregate_version DESC, created_at DESC LIMIT 1",
            [aggregate_id, aggregate_type, schema_version],
        )
        if not rows:
            return None
        version, schema, position, state, created = rows[0]
        return Snapshot(
            aggregate_id, aggregate_type, int(version), int(schema), int(position), json.loads(state), created
        )

    def latest_frame(
        self, aggregate_type: str, schema_version: int, ids: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """The newest snapshot per stream of a type and schema version (optionally only ``ids``)."""
        return self.query_frame(
            "SELECT aggregate_id::VARCHAR AS aggregate_id, aggregate_version, global_position, "
            "state::VARCHAR AS state FROM idx.snapshots WHERE aggregate_type = $1 AND schema_version = $2 "
            "AND ($3::VARCHAR[] IS NULL OR aggregate_id::VARCHAR IN (SELECT unnest($3::VARCHAR[]))) "
            "QUALIFY row_number() OVER (PARTITION BY aggregate_id ORDER BY aggregate_version DESC) = 1",
            [aggregate_type, schema_version, list(ids) if ids is not None else None],
        )

    def count(self) -> int:
        return int(self.query("SELECT count(*) FROM idx.snapshots")[0][0])
