"""The in-memory view of the write-ahead tail: its committed batches plus lookups a writer needs on
every small commit (event id → position, stream → version), kept incrementally so that a one-event
commit costs microseconds, not a scan."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pyarrow as pa

from settler_pipeline.store.schema import EVENT_SCHEMA, POLARS_SCHEMA


class Tail:
    """Committed write-ahead events in position order (owned by one store instance)."""

    def __init__(self) -> None:
        self.batches: list[pa.Table] = []
        self.rows = 0
        self.last_position: int | None = None
        self.first_created_at: datetime | None = None
        self.last_created_at: datetime | None = None
        self.ids: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self._frame: pl.DataFrame | None = None

    def extend(self, table: pa.Table) -> None:
        """Add one committed batch (positions after the current ones)."""
        if table.num_rows == 0:
            return
        self.batches.append(table)
        self.rows += table.num_rows
        positions: list[int] = table.column("global_position").to_pylist()  # type: ignore[assignment]
        event_ids: list[str] = table.column("event_id").to_pylist()  # type: ignore[assignment]
        streams: list[str] = table.column("aggregate_id").to_pylist()  # type: ignore[assignment]
        versions: list[int] = table.column("aggregate_version").to_pylist()  # type: ignore[assignment]
        self.ids.update(zip(event_ids, positions, strict=True))
        for aggregate_id, version in zip(streams, versions, strict=True):
            if version > self.versions.get(aggregate_id, 0):
                self.versions[aggregate_id] = version
        self.last_position = positions[-1]
        created = table.column("created_at")
        if self.first_created_at is None:
            self.first_created_at = created[0].as_py()
        self.last_created_at = created[-1].as_py()
        self._frame = None

    def table(self) -> pa.Table:
        """All tail events as one Arrow table."""
        # one chunk: thousands of one-event records as separate chunks make every later step slow
        return pa.concat_tables(self.batches).combine_chunks() if self.batches else EVENT_SCHEMA.empty_table()

    @property
    def frame(self) -> pl.DataFrame:
        """All tail events as one Polars frame (cached until the next :meth:`extend`)."""
        if self._frame is None:
            frame = pl.from_arrow(self.table())
            assert isinstance(frame, pl.DataFrame)
            # one contiguous chunk: a tail built from thousands of small records filters 50x faster
            self._frame = frame.cast(POLARS_SCHEMA).rechunk()  # type: ignore[arg-type]
        return self._frame
