"""The read side of the log: point reads decode only the row groups the index names; bulk reads scan
the view's segments plus its tail. Segment bytes are checked against their checksums once per process."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.errors import CorruptionError, StoreError, ValidationError
from settler_pipeline.ids import validate_uuid
from settler_pipeline.store import limits, stream_copies
from settler_pipeline.store.batch import as_of_limit, upcast_rows
from settler_pipeline.store.envelopes import table_to_envelopes
from settler_pipeline.store.named_ids import is_time_ordered
from settler_pipeline.store.payloads import PAYLOAD_SCHEMA, SEGMENT_SCHEMA, TYPED
from settler_pipeline.store.schema import (
    COLUMNS,
    POLARS_SCHEMA,
)
from settler_pipeline.store.segments import ordered_scans, verify_files
from settler_pipeline.store.stream_reads import NO_LIMIT, in_position_order, stream_part
from settler_pipeline.store.time_travel import TimeTravel
from settler_pipeline.store.view import LogView

_log = logging.getLogger("settler_pipeline.store.event_store")
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LogReader(TimeTravel):
    """Reads: streams, flows, causation chains, the whole log, time travel. No lock is taken."""

    def get_events(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        to_version: int | None = None,
        *,
        as_of_position: int | None = None,
        as_of: datetime | None = None,
    ) -> list[EventEnvelope]:
        """The events of one stream in version order, upcast to current versions; optionally only
        ``from_version..to_version`` (inclusive) and only as the log stood at a position or time."""
        aggregate_id = validate_uuid("aggregate_id", aggregate_id)
        limit = as_of_limit(as_of_position, as_of, self.position_at)
        low, high = from_version or 1, to_version if to_version is not None else NO_LIMIT
        rows = self._stream_table(aggregate_id, aggregate_type, low, high)
        if limit is not None:
            rows = rows.filter(pc.less_equal(rows.column("global_position"), pa.scalar(limit)))
        # a stream's versions rise with its positions (both assigned under the write lock), so the
        # rows, in position order, are in version order already
        events = table_to_envelopes(rows)
        current = self.registry.current_version
        if all((current(t) or 0) <= v for t, v in {(e.event_type, e.event_version) for e in events}):
            return events  # nothing to upcast (the usual load): no call per event
        return [self.registry.upcast(event) for event in events]

    def _stream_table(self, aggregate_id: str, aggregate_type: str, low: int, high: int) -> pa.Table:
        """A stream's stored rows with versions ``low..high`` (segments and tail), in position order.
        Only the row groups the index names are read, from the segments' stream copies where they
        have one; retried with a fresh view if a flush or compaction replaced the view meanwhile."""
        for _ in range(20):
            view = self._refresh()
            live = view.live_paths
            groups: dict[tuple[str, str], set[int]] = {}
            for path, row_group, copy in self._stream_granules.of_stream(
                live, aggregate_id, aggregate_type, low, high
            ):
                if path in live:
                    groups.setdefault((path, copy), set()).add(row_group)
            try:
                parts = [
                    stream_part(
                        self._stream_rows(path, copy, sorted(gs), aggregate_id, low, high),
                        aggregate_id,
                        aggregate_type,
                        low,
                        high,
                        clustered=bool(copy),
                    )
                    for (path, copy), gs in groups.items()
                ]
            except FileNotFoundError as exc:
                self._view = None
                if self._load_manifest().generation == view.manifest.generation:  # not a compaction
                    missing = str(exc.filename or exc)
                    if Path(missing).is_relative_to(self.copies_dir):
                        raise CorruptionError(
                            f"{missing} is missing (a stream copy, derived: nothing is lost)",
                            hint=stream_copies.DAMAGED_FIX,
                        ) from exc
                    raise CorruptionError(
                        f"{missing} is missing (the log's commit point names it)",
                        hint="`settler log verify` lists every missing file and how to repair it",
                    ) from exc
                continue
            if self._load_manifest().generation != view.manifest.generation:
                self._view = None  # the index may have lost the view's segments meanwhile
                continue
            # the tail's stream map (built once per tail batch) spares a filter over the whole tail
            if view.tail.rows and view.tail.versions.get(aggregate_id, 0) >= low:
                tail = view.tail.stream_rows(aggregate_id).filter(
                    (pl.col("aggregate_type") == aggregate_type)
                    & pl.col("aggregate_version").is_between(low, high)
                )
                parts.append(tail.to_arrow())
            return in_position_order(parts)
        raise StoreError("the log kept being compacted while being read", hint="retry the read")

    def _stream_rows(
        self, path: str, copy: str, groups: list[int], aggregate_id: str, low: int, high: int
    ) -> pa.Table:
        """Rows holding a stream's versions ``low..high`` (and perhaps others, filtered by the caller):
        the row groups ``groups`` of the segment's stream copy (``copy``) or of the segment itself."""
        if copy:
            return self._copy_reader.read_table(copy, groups)
        return self._reader.read_stream(path, groups, aggregate_id, low, high)

    def stream_frame(
        self,
        aggregate_id: str,
        aggregate_type: str,
        from_version: int | None = None,
        *,
        as_of_position: int | None = None,
    ) -> pl.DataFrame:
        """A stream's events as a Polars frame in version order (stored columns, ``data`` as JSON text),
        upcast to current versions: the bulk counterpart of :meth:`get_events` for folding big streams."""
        aggregate_id = validate_uuid("aggregate_id", aggregate_id)
        table = self._stream_table(aggregate_id, aggregate_type, from_version or 1, NO_LIMIT)
        rows = pl.from_arrow(table)
        assert isinstance(rows, pl.DataFrame)
        rows = rows.cast(POLARS_SCHEMA)  # type: ignore[arg-type]
        if as_of_position is not None:
            rows = rows.filter(pl.col("global_position") <= as_of_position)
        return self._upcast_frame(rows)  # in version order, as in get_events

    def _upcast_frame(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Upcast the rows whose event type has a newer registered version (others untouched)."""
        return upcast_rows(rows, self.registry)

    def get_event(self, event_id: str) -> EventEnvelope | None:
        """The event with this id (upcast), or ``None`` if it is not in the log."""
        event_id = validate_uuid("event_id", event_id)
        view = self._refresh()
        rows = self._rows_by_ids([event_id], view)
        return self._envelopes(rows)[0] if rows.height else None

    def event_position(self, event_id: str) -> int | None:
        """The position of the event with this id, or ``None`` if it is not in the log."""
        event_id = validate_uuid("event_id", event_id)
        view = self._refresh()
        if event_id in view.tail.ids:
            return view.tail.ids[event_id]
        if not view.manifest.max_event_id or event_id > view.manifest.max_event_id:
            return None
        rows = self._rows_by_ids([event_id], view)
        return int(rows["global_position"][0]) if rows.height else None

    def get_events_by_correlation_id(
        self, correlation_id: str, *, as_of_position: int | None = None
    ) -> list[EventEnvelope]:
        """Every event of one flow (same correlation id), in log order."""
        return self._envelopes(self.correlation_frame(correlation_id, as_of_position=as_of_position))

    def correlation_frame(self, correlation_id: str, *, as_of_position: int | None = None) -> pl.DataFrame:
        """One flow's events as a Polars frame in log order (stored columns, not upcast)."""
        correlation_id = validate_uuid("correlation_id", correlation_id)
        rows = self._locate(
            "SELECT segment_path, row_group FROM idx.correlation_granules WHERE correlation_id = $1::UUID",
            [correlation_id],
            pl.col("correlation_id") == correlation_id,
        )
        if as_of_position is not None:
            rows = rows.filter(pl.col("global_position") <= as_of_position)
        return rows

    def get_causation_chain(self, event_id: str) -> list[EventEnvelope]:
        """The event, the events that caused it (following ``causation_id`` up to the first cause that
        is not an event, e.g. a command) and every event it caused, transitively; in log order."""
        event_id = validate_uuid("event_id", event_id)
        view = self._refresh()
        chain: set[str] = set()
        frontier = [event_id]
        while frontier:  # upwards: the event and its causes, one index query per generation
            found = self._links("event_id", frontier, view)
            if not chain and not found:
                return []
            chain.update(e for e, _ in found)
            frontier = sorted({c for _, c in found if c is not None and c not in chain})
        frontier = [event_id]
        while frontier:  # downwards: everything it caused
            found = self._links("causation_id", frontier, view)
            frontier = sorted({e for e, _ in found if e not in chain})
            chain.update(frontier)
        ids = sorted(chain)
        return self._envelopes(self._rows_by_ids(ids, view))

    def _rows_by_ids(self, ids: list[str], view: LogView) -> pl.DataFrame:
        """Committed events with the given ids (row groups found by the exact index for ids that are not
        time-ordered, by their id ranges for the others)."""
        wanted = pl.col("event_id").is_in(pl.Series(ids, dtype=pl.String).implode())
        ordered = [i for i in ids if is_time_ordered(i)]
        others = [i for i in ids if not is_time_ordered(i)]

        def where(current: LogView) -> list[tuple[str, int]]:
            spots = self._named.locate(others, current.live_paths)
            if ordered:
                spots += self.index.query(
                    "SELECT DISTINCT g.segment_path, g.row_group FROM idx.row_groups g "
                    "JOIN (SELECT unnest($1::UUID[]) AS id) q "
                    "ON q.id BETWEEN g.min_event_id AND g.max_event_id",
                    [ordered],
                )
            return spots

        return self._read_granules(where, [], wanted, view, with_tail=True)

    def _links(self, column: str, ids: list[str], view: LogView) -> list[tuple[str, str | None]]:
        """(event_id, causation_id) of the events whose ``column`` ("event_id" or "causation_id") is
        one of ``ids``."""
        if column == "event_id":
            rows = self._rows_by_ids(ids, view)
        else:
            wanted = pl.col("causation_id").is_in(pl.Series(ids, dtype=pl.String).implode())
            rows = self._read_granules(
                "SELECT segment_path, row_group FROM idx.causation_granules "
                "WHERE causation_id IN (SELECT unnest($1::UUID[]))",
                [ids],
                wanted,
                view,
                with_tail=True,
            )
        return list(rows.select("event_id", "causation_id").iter_rows())

    def read(
        self,
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        *,
        as_of: datetime | None = None,
        payload_fields: Sequence[str] = (),
        skip: frozenset[str] = frozenset(),
    ) -> pl.LazyFrame:
        """The log (positions ``> from_position`` and ``<= to_position``) as a Polars LazyFrame in
        position order with the stored columns (``data`` as JSON text, ``event_version`` as stored).

        With ``payload_fields``, also the flag ``payload_typed`` and those typed payload columns
        (:mod:`~settler_pipeline.store.payloads`): they hold the payload of rows whose flag is true;
        other rows (events in the write-ahead tail, segments written before the typed columns, unknown
        types, older versions) have the flag false or null and their payload only in ``data``.

        The frame reads a fixed set of files; collect it promptly (a later ``compact`` retires files)."""
        unknown_fields = [name for name in payload_fields if name not in PAYLOAD_SCHEMA]
        if unknown_fields:
            raise ValidationError(f"no typed payload column(s) {', '.join(unknown_fields)}")
        wanted = [*COLUMNS, TYPED, *payload_fields] if payload_fields else list(COLUMNS)
        view = self._refresh()
        limit = as_of_limit(to_position, as_of, self.position_at)
        upper = view.head if limit is None else min(limit, view.head)
        chosen = [
            s
            for s in view.manifest.segments
            if s.last_position > from_position and s.first_position <= upper and s.path not in skip
        ]
        paths = [self.segments_dir / s.path for s in chosen]
        if vanished := verify_files(paths):
            self._view = None
            if self._load_manifest().generation == view.manifest.generation:
                raise CorruptionError(
                    f"segment {vanished[0]} is missing (the log's commit point names it)",
                    hint="restore it from a backup of the data directory; `settler log verify` lists "
                    "every missing file",
                )
            # a compaction replaced the files meanwhile: read the new ones
            return self.read(
                from_position,
                to_position,
                event_types,
                tenant_id,
                as_of=as_of,
                payload_fields=payload_fields,
                skip=skip,
            )
        parts: list[pl.LazyFrame] = []
        if paths:
            parts.extend(scan.select(wanted) for scan in ordered_scans(self.segments_dir, chosen))
        if view.tail.rows:
            tail = view.tail.frame.lazy()
            parts.append(
                tail.with_columns(pl.lit(None, SEGMENT_SCHEMA[n]).alias(n) for n in wanted[len(COLUMNS) :])
                if payload_fields
                else tail
            )
        if not parts:
            return pl.LazyFrame(schema={n: SEGMENT_SCHEMA[n] for n in wanted})
        frame = pl.concat(parts, how="vertical")
        first = min((seg.first_position for seg in chosen), default=view.manifest.segments_head + 1)
        if first <= from_position or upper < view.head:
            frame = frame.filter(pl.col("global_position").is_between(from_position + 1, upper))
        if event_types is not None:
            frame = frame.filter(pl.col("event_type").is_in(list(event_types)))
        if tenant_id is not None:
            frame = frame.filter(pl.col("tenant_id") == validate_uuid("tenant_id", tenant_id))
        return frame

    def read_fields(
        self,
        fields: Mapping[str, pl.DataType | type[pl.DataType]],
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        columns: Sequence[str] = limits.PROJECTION_COLUMNS,
    ) -> pl.DataFrame:
        """The log like :meth:`read`, but with chosen top-level ``data`` fields as typed columns
        instead of the JSON text: the fast path for projections (DuckDB extracts the fields while it
        scans the segments, which is several times faster than decoding JSON in Polars). A missing
        field is null; nested values come back as JSON text. ``columns`` picks the envelope columns
        (fewer columns read faster)."""
        for name in fields:
            if not _FIELD_RE.match(name) or name in POLARS_SCHEMA:
                raise ValidationError(
                    f"cannot read data field {name!r}",
                    hint="field names are lower-case identifiers that are not envelope columns",
                )
        view = self._refresh()
        upper = view.head if to_position is None else min(to_position, view.head)
        paths = [
            str(self.segments_dir / s.path)
            for s in view.manifest.segments
            if s.last_position > from_position and s.first_position <= upper
        ]
        unknown = [c for c in columns if c not in POLARS_SCHEMA]
        if unknown:
            raise ValidationError(f"unknown envelope column(s) {', '.join(unknown)}")
        base = list(dict.fromkeys(["global_position", *columns]))
        verify_files([Path(p) for p in paths])
        # $1 from, $2 to, $3 event types (or NULL), $4.. JSON paths, then the file list. Field names are
        # validated identifiers (above); every value is a bound parameter.
        extract = "".join(f", json_extract_string(data, ${i + 4}) AS {name}" for i, name in enumerate(fields))
        files_param = f"${len(fields) + 4}"
        params: list[Any] = [
            from_position,
            upper,
            list(event_types) if event_types is not None else None,
            *(f"$.{name}" for name in fields),
        ]
        where = (
            " WHERE global_position > $1 AND global_position <= $2"
            " AND ($3::VARCHAR[] IS NULL OR list_contains($3::VARCHAR[], event_type))"
        )
        select = f"SELECT {', '.join(base)}{extract} FROM "  # noqa: S608
        parts: list[pl.DataFrame] = []
        con = duckdb.connect()
        try:
            if paths:
                # union_by_name: files written before the typed payload columns have fewer columns
                query = select + f"read_parquet({files_param}::VARCHAR[], union_by_name = true)" + where
                parts.append(con.sql(query, params=[*params, paths]).pl())
            if view.tail.rows:
                con.register("tail_events", view.tail.frame)
                parts.append(con.sql(select + "tail_events" + where, params=params).pl())
        finally:
            con.close()
        frame = pl.concat(parts) if parts else pl.DataFrame(schema={c: POLARS_SCHEMA[c] for c in base})
        frame = frame.with_columns(pl.col(name).cast(dtype, strict=False) for name, dtype in fields.items())
        if tenant_id is not None:
            frame = frame.filter(pl.col("tenant_id") == validate_uuid("tenant_id", tenant_id))
        return frame.sort("global_position")
