"""The in-memory view of the write-ahead tail: its committed batches plus lookups a writer needs on
every small commit (event id → position, stream → version).

The lookups are built lazily, batch by batch, the first time they are asked for after a batch was
added: a one-event commit then costs microseconds (one event to add), and a columnar batch of
thousands of events appended to the tail costs no per-event Python work unless something asks."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from settler_pipeline.domain.payload_schema import TYPED_FLAG as TYPED
from settler_pipeline.store.schema import EVENT_SCHEMA, POLARS_SCHEMA


class Tail:
    """Committed write-ahead events in position order (owned by one store instance)."""

    def __init__(self) -> None:
        self.batches: list[pa.Table] = []
        self.rows = 0
        self.last_position: int | None = None
        self.first_created_at: datetime | None = None
        self.last_created_at: datetime | None = None
        self.max_event_id = ""  # greatest event id in the tail ("" when empty)
        self._ids: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._rows: dict[str, list[int]] = {}  # stream -> its rows' offsets in the tail, in order
        self._indexed = 0  # batches already in ``_ids`` / ``_versions`` / ``_rows``
        self._indexed_rows = 0  # rows of those batches
        self._frames: list[pl.DataFrame | None] = []  # each batch as a Polars frame, when its writer had one
        # each batch's typed payload columns, when its writer had them (see :meth:`typed_columns`)
        self._typed: list[pl.DataFrame | None] = []
        self._frame: pl.DataFrame | None = None  # the first ``_framed`` batches as one frame
        self._framed = 0
        self._chunks = 0  # chunks of ``_frame``: rechunked once they are many

    def extend(
        self, table: pa.Table, frame: pl.DataFrame | None = None, typed: pl.DataFrame | None = None
    ) -> None:
        """Add one committed batch (positions after the current ones); ``frame`` is the same rows as a
        Polars frame with :data:`POLARS_SCHEMA`, when the writer has one (it then needs no conversion
        when the tail is read or flushed: ~1 µs per event, most of it the string columns); ``typed``
        its typed payload columns and flag, row for row, when the writer has them (the write-ahead
        record holds the envelope columns only, so a tail read back from the file has none)."""
        if table.num_rows == 0:
            return
        self.batches.append(table)
        self._frames.append(frame)
        self._typed.append(typed)
        self.rows += table.num_rows
        self.last_position = int(table.column("global_position")[-1].as_py())
        top = pc.max(table.column("event_id")).as_py()
        if top is not None and top > self.max_event_id:
            self.max_event_id = top
        created = table.column("created_at")
        if self.first_created_at is None:
            self.first_created_at = created[0].as_py()
        self.last_created_at = created[-1].as_py()

    def _index(self) -> None:
        for table in self.batches[self._indexed :]:
            positions: list[int] = table.column("global_position").to_pylist()  # type: ignore[assignment]
            event_ids: list[str] = table.column("event_id").to_pylist()  # type: ignore[assignment]
            streams: list[str] = table.column("aggregate_id").to_pylist()  # type: ignore[assignment]
            versions: list[int] = table.column("aggregate_version").to_pylist()  # type: ignore[assignment]
            self._ids.update(zip(event_ids, positions, strict=True))
            known, rows = self._versions, self._rows
            for offset, (aggregate_id, version) in enumerate(
                zip(streams, versions, strict=True), start=self._indexed_rows
            ):
                if version > known.get(aggregate_id, 0):
                    known[aggregate_id] = version
                rows.setdefault(aggregate_id, []).append(offset)
            self._indexed_rows += table.num_rows
        self._indexed = len(self.batches)

    @property
    def ids(self) -> dict[str, int]:
        """Event id → position of every tail event."""
        if self._indexed != len(self.batches):
            self._index()
        return self._ids

    @property
    def versions(self) -> dict[str, int]:
        """Stream → its newest version in the tail."""
        if self._indexed != len(self.batches):
            self._index()
        return self._versions

    def stream_rows(self, aggregate_id: str) -> pl.DataFrame:
        """The tail's rows of one stream (any aggregate type), in position order: gathered by their
        offsets (kept with the stream map), not found by a filter over the whole tail."""
        if self._indexed != len(self.batches):
            self._index()
        offsets = self._rows.get(aggregate_id)
        if not offsets:
            return self.frame.clear()
        return self.frame[offsets]

    def table(self) -> pa.Table:
        """All tail events as one Arrow table."""
        # one chunk: thousands of one-event records as separate chunks make every later step slow
        return pa.concat_tables(self.batches).combine_chunks() if self.batches else EVENT_SCHEMA.empty_table()

    def chunked_frame(self) -> pl.DataFrame:
        """All tail events as a Polars frame, possibly in several chunks (for writing them out)."""
        return self._framed_up_to_date(rechunk=False)

    def typed_columns(self) -> pl.DataFrame | None:
        """The typed payload columns and flag of every tail event, row for row with
        :meth:`chunked_frame` (a batch committed without them has its flag null: still to be typed),
        or ``None`` when no batch has them."""
        if not any(t is not None for t in self._typed):
            return None
        parts = [
            t
            if t is not None
            else pl.DataFrame({TYPED: pl.repeat(None, b.num_rows, dtype=pl.Boolean, eager=True)})
            for t, b in zip(self._typed, self.batches, strict=True)
        ]
        return pl.concat(parts, how="diagonal_relaxed")

    @property
    def frame(self) -> pl.DataFrame:
        """All tail events as one Polars frame in few chunks (kept between calls and extended with
        the batches added since, so a read after each one-event commit costs no pass over the tail)."""
        return self._framed_up_to_date(rechunk=True)

    def _framed_up_to_date(self, *, rechunk: bool) -> pl.DataFrame:
        if self._frame is None or self._framed != len(self.batches):
            new = self._pending_frame()
            self._frame = new if self._frame is None else pl.concat([self._frame, new], rechunk=False)
            self._framed = len(self.batches)
            self._chunks += 1
        if rechunk and self._chunks > 32:
            # a tail of thousands of one-event chunks filters 50x slower than one chunk; rechunking
            # once every 32 additions keeps that cost a small share of the commits that caused it
            self._frame = self._frame.rechunk()
            self._chunks = 1
        return self._frame

    def _pending_frame(self) -> pl.DataFrame:
        """The batches not yet in ``_frame`` as one frame (in as few chunks as the writers' frames)."""
        pending = self.batches[self._framed :]
        frames = self._frames[self._framed :]
        if pending and all(f is not None for f in frames):
            return pl.concat([f for f in frames if f is not None], rechunk=False)
        table = pa.concat_tables(pending) if pending else EVENT_SCHEMA.empty_table()
        new = pl.from_arrow(table.combine_chunks())
        assert isinstance(new, pl.DataFrame)
        return new.cast(POLARS_SCHEMA)  # type: ignore[arg-type]
