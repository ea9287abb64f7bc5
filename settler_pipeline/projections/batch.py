"""A chunk of the event log as the read models see it: reconciliation events in position order, with
the payload fields they need decoded once and shared by every read model.

Decoding JSON costs more than everything else a projection does, so it happens once per chunk, only
for the fields listed here, and in DuckDB (``json_transform`` parses each document once into a typed
struct; two to three times faster than Polars' ``str.json_decode`` on this machine). Lifecycle and
review events are few; the per-record events (``RecordMatched`` above all) are most of the log.
"""

from __future__ import annotations

import json
import os
import threading
from functools import cached_property
from typing import Any, Final

import duckdb
import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain.envelope import EventEnvelope, canonical_json
from settler_pipeline.domain.payload_schema import model_schema, union_schema
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.store.event_store import EventStore

READ_COLUMNS: Final = (
    "global_position",
    "aggregate_id",
    "event_type",
    "event_version",
    "tenant_id",
    "timestamp",
    "data",
)
"""Stored columns a read model reads (``aggregate_id`` is exposed as ``reconciliation_id``)."""

TS: Final = pl.Datetime("us", "UTC")
IDS: Final = pl.List(pl.String)

RESET_TYPES: Final = (e.RECONCILIATION_STARTED, e.RECONCILIATION_RETRIED)
FETCH_TYPES: Final = (e.SOURCE_RECORDS_FETCHED, e.TARGET_RECORDS_FETCHED)
FINISH_TYPES: Final = (
    e.RECONCILIATION_COMPLETED,
    e.RECONCILIATION_FAILED,
    e.RECONCILIATION_CANCELLED,
    e.RECONCILIATION_ABANDONED,
)

LIFECYCLE_MODELS: Final = tuple(
    dict.fromkeys(model for kind, model in e.PAYLOADS.items() if kind not in e.BULK_EVENT_TYPES)
)

# The payload fields each kind of event contributes to the read models; their types come from the
# payload models (one struct for all lifecycle and review events: absent fields decode as null).
LIFECYCLE_FIELDS: Final = union_schema(
    LIFECYCLE_MODELS,
    (
        "attempt",
        "job_id",
        "date_range",
        "count",
        "quarantined_count",
        "summary",
        "error",
        "step",
        "reason",
        "match_id",
        "source_ids",
        "target_ids",
        "exception_id",
        "confirmed_by",
        "rejected_by",
        "matched_by",
        "dismissed_by",
        "amount",
        "target_amount",
        "amount_difference",
        "currency",
    ),
)

RECORD_TYPES: Final = (e.RECORD_UNMATCHED, e.DUPLICATE_DETECTED, e.RECORD_QUARANTINED)

# RecordMatched / MatchProposed: most of the log, so only what the read models use.
MATCH_FIELDS: Final = model_schema(
    e.RecordMatched,
    (
        "attempt",
        "match_id",
        "rule",
        "match_type",
        "source_ids",
        "target_ids",
        "amount",
        "target_amount",
        "amount_difference",
        "currency",
        "confidence",
    ),
)

# RecordUnmatched / DuplicateRecordDetected / RecordQuarantined.
RECORD_FIELDS: Final = union_schema(
    (e.RecordUnmatched, e.DuplicateRecordDetected, e.RecordQuarantined),
    (
        "attempt",
        "side",
        "record_id",
        "line_number",
        "amount",
        "currency",
        "reason",
        "closest_id",
        "closest_amount",
        "closest_reference",
        "closest_rejection",
    ),
)


_connection: tuple[int, duckdb.DuckDBPyConnection] | None = None
_connection_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor on this process's private in-memory DuckDB (connecting costs ~10 ms, a cursor nothing)."""
    global _connection
    with _connection_lock:
        if _connection is None or _connection[0] != os.getpid():  # a forked child needs its own
            _connection = (os.getpid(), duckdb.connect(":memory:"))
        return _connection[1].cursor()


def _duckdb_type(dtype: Any) -> Any:
    """The ``json_transform`` structure for a Polars type."""
    if isinstance(dtype, pl.List):
        return [_duckdb_type(dtype.inner)]
    if isinstance(dtype, pl.Struct):
        return {f.name: _duckdb_type(f.dtype) for f in dtype.fields}
    names = {
        pl.String: "VARCHAR",
        pl.Int64: "BIGINT",
        pl.Int32: "INTEGER",
        pl.Float64: "DOUBLE",
        pl.Boolean: "BOOLEAN",
    }
    for polars_type, name in names.items():
        if dtype == polars_type:
            return name
    raise TypeError(f"no JSON decoding for {dtype}")


def decode_payloads(
    frame: pl.DataFrame, fields: dict[str, pl.DataType], rows: pl.Expr | None = None
) -> pl.DataFrame:
    """The rows of ``frame`` selected by ``rows`` (all by default), without ``data``, plus one typed
    column per field of their JSON payload (null when a payload lacks the field or has another type).
    Row order is kept."""
    picked = frame.select(rows.alias("_pick")).to_series() if rows is not None else None
    envelope = frame.drop("data")
    if picked is not None:
        envelope = envelope.filter(picked)
    if envelope.height == 0:
        return envelope.with_columns(pl.lit(None, dtype).alias(n) for n, dtype in fields.items())
    structure = json.dumps({name: _duckdb_type(dtype) for name, dtype in fields.items()})
    # Hand DuckDB the payloads without copying them (Arrow string views). A small selection is cheaper
    # to copy out first; a large one is cheaper to filter inside DuckDB's scan.
    if picked is not None and envelope.height < frame.height // 2:
        payloads = frame.select("data").filter(picked).with_columns(pl.lit(True).alias("_pick"))
    else:
        payloads = frame.select("data", (picked if picked is not None else pl.lit(True)).alias("_pick"))
    con = _cursor()
    try:
        con.register("payloads", payloads.to_arrow(compat_level=pl.CompatLevel.newest()))
        table = con.sql(
            "SELECT unnest(json_transform(data, $1)) FROM payloads WHERE _pick", params=[structure]
        ).to_arrow_table()
    finally:
        con.close()
    decoded = pl.from_arrow(table)
    assert isinstance(decoded, pl.DataFrame)
    # A filter-and-project query keeps insertion order in DuckDB (preserve_insertion_order is on by default).
    return pl.concat([envelope, decoded.cast(fields)], how="horizontal")  # type: ignore[arg-type]


def upcast_payloads(frame: pl.DataFrame, registry: EventRegistry) -> pl.DataFrame:
    """Rewrite the ``data`` of rows stored at an older ``event_version`` to the current version of their
    type (a no-op, and cheap, when every row is current: the usual case)."""
    stale = [
        (event_type, version)
        for event_type, version in frame.select("event_type", "event_version").unique().iter_rows()
        if (current := registry.current_version(event_type)) is not None and version < current
    ]
    if not stale:
        return frame
    needs = pl.struct("event_type", "event_version").is_in(
        pl.DataFrame(stale, schema={"event_type": pl.String, "event_version": pl.Int32}, orient="row")
        .to_struct()
        .implode()
    )
    fixed = [
        canonical_json(
            registry.upcast(
                EventEnvelope.model_construct(
                    event_type=event_type, event_version=version, data=json.loads(data)
                )
            ).data
        )
        for event_type, version, data in frame.filter(needs)
        .select("event_type", "event_version", "data")
        .iter_rows()
    ]
    index = frame.with_row_index("_row").filter(needs)["_row"]
    data = frame["data"].scatter(index, fixed)
    return frame.with_columns(data)


class EventBatch:
    """Reconciliation events with positions in ``(after, upto]``, in position order."""

    def __init__(self, events: pl.DataFrame, *, after: int, upto: int) -> None:
        self.events = events
        self.after = after
        self.upto = upto

    @classmethod
    def read(cls, store: EventStore, after: int, upto: int, *, tenant_id: str | None = None) -> EventBatch:
        """Read positions ``(after, upto]`` of ``store`` (only reconciliation events)."""
        frame = (
            store.read(from_position=after, to_position=upto, tenant_id=tenant_id)
            .filter(pl.col("aggregate_type") == e.AGGREGATE_TYPE)
            .select(READ_COLUMNS)
            .collect()
        )
        frame = upcast_payloads(frame, store.registry)
        return cls(
            frame.drop("event_version").rename({"aggregate_id": "reconciliation_id"}), after=after, upto=upto
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, after: int = 0, upto: int | None = None) -> EventBatch:
        """A batch from stored-event rows (columns as :meth:`EventStore.read`), e.g. in tests."""
        rows = frame.filter(pl.col("aggregate_type") == e.AGGREGATE_TYPE).sort("global_position")
        last = upto if upto is not None else int(rows["global_position"].max() or after)  # type: ignore[arg-type]
        return cls(
            rows.select(READ_COLUMNS).drop("event_version").rename({"aggregate_id": "reconciliation_id"}),
            after=after,
            upto=last,
        )

    def since(self, position: int) -> EventBatch:
        """The part of this batch after ``position`` (decoded frames are filtered, not decoded again)."""
        if position <= self.after:
            return self
        later = pl.col("global_position") > position
        part = EventBatch(self.events.filter(later), after=position, upto=self.upto)
        for name in ("lifecycle", "matched", "proposed", "records"):
            if name in self.__dict__:
                part.__dict__[name] = self.__dict__[name].filter(later)
        return part

    def decode(self) -> EventBatch:
        """Decode every payload field now (rather than on first use); returns the batch."""
        _ = self.lifecycle, self.matched, self.proposed, self.records, self.last_positions
        return self

    @property
    def height(self) -> int:
        return self.events.height

    @cached_property
    def max_timestamp(self) -> Any:
        """The newest event time in the batch (None when empty)."""
        return self.events["timestamp"].max()

    @cached_property
    def lifecycle(self) -> pl.DataFrame:
        """Lifecycle and review events with their payload fields (:data:`LIFECYCLE_FIELDS`)."""
        rows = ~pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES))
        return decode_payloads(self.events, LIFECYCLE_FIELDS, rows).with_columns(
            # ReconciliationStarted of older writers may lack ``attempt``: a start is attempt 1.
            pl.when(pl.col("event_type") == e.RECONCILIATION_STARTED)
            .then(pl.col("attempt").fill_null(1))
            .otherwise(pl.col("attempt"))
            .alias("attempt")
        )

    @cached_property
    def matched(self) -> pl.DataFrame:
        """``RecordMatched`` events (most of the log) with their payload fields (:data:`MATCH_FIELDS`)."""
        return decode_payloads(self.events, MATCH_FIELDS, pl.col("event_type") == e.RECORD_MATCHED)

    @cached_property
    def proposed(self) -> pl.DataFrame:
        """``MatchProposed`` events with their payload fields (:data:`MATCH_FIELDS`)."""
        return decode_payloads(self.events, MATCH_FIELDS, pl.col("event_type") == e.MATCH_PROPOSED)

    @cached_property
    def records(self) -> pl.DataFrame:
        """Unmatched, duplicate and quarantined records with their payload fields (:data:`RECORD_FIELDS`)."""
        return decode_payloads(self.events, RECORD_FIELDS, pl.col("event_type").is_in(list(RECORD_TYPES)))

    def of_types(self, *event_types: str) -> pl.DataFrame:
        """Decoded lifecycle/review events of the given types."""
        return self.lifecycle.filter(pl.col("event_type").is_in(list(event_types)))

    @cached_property
    def resets(self) -> pl.DataFrame:
        """Starts, retries and supersessions: ``reconciliation_id, global_position, attempt, timestamp``.

        A supersession counts as an empty attempt after the superseded one, so the read models that keep
        only a run's latest attempt (exceptions, matches) drop everything of a superseded run."""
        return self.of_types(*RESET_TYPES, e.RECONCILIATION_SUPERSEDED).select(
            "reconciliation_id",
            "global_position",
            pl.when(pl.col("event_type") == e.RECONCILIATION_SUPERSEDED)
            .then(pl.col("attempt") + 1)
            .otherwise(pl.col("attempt"))
            .alias("attempt"),
            "timestamp",
        )

    def final_attempts(self, known: pl.DataFrame, *, supersessions: bool = True) -> pl.DataFrame:
        """The attempt each run is at after this batch: the newest start/retry (or supersession, see
        :attr:`resets`, unless ``supersessions`` is false), else ``known`` (``reconciliation_id,
        attempt`` from earlier batches)."""
        resets = self.resets if supersessions else self.of_types(*RESET_TYPES)
        batch = resets.group_by("reconciliation_id").agg(pl.col("attempt").max().alias("_batch"))
        return (
            known.select("reconciliation_id", pl.col("attempt").alias("_known"))
            .join(batch, on="reconciliation_id", how="full", coalesce=True)
            .select("reconciliation_id", pl.max_horizontal("_known", "_batch").alias("attempt"))
        )

    def attach_attempt(self, rows: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
        """``rows`` (events of this batch without an ``attempt`` field, e.g. review decisions) with the
        attempt their run was at when each was appended: the latest start/retry before it in this batch,
        else the attempt ``known`` from earlier batches."""
        if rows.height == 0:
            return rows.with_columns(pl.lit(None, pl.Int64).alias("attempt"))
        resets = self.resets.select(
            "reconciliation_id",
            pl.col("global_position").alias("_reset_at"),
            pl.col("attempt").alias("_reset"),
        ).sort("_reset_at")
        located = (
            rows.sort("global_position")
            .join_asof(
                resets,
                left_on="global_position",
                right_on="_reset_at",
                by="reconciliation_id",
                strategy="backward",
                check_sortedness=False,  # both sides are sorted by position just above
            )
            .join(
                known.select("reconciliation_id", pl.col("attempt").alias("_known")),
                on="reconciliation_id",
                how="left",
            )
        )
        return located.with_columns(pl.coalesce("_reset", "_known").alias("attempt")).drop(
            "_reset_at", "_reset", "_known"
        )

    @cached_property
    def last_positions(self) -> pl.DataFrame:
        """``reconciliation_id, tenant_id, last_position`` over every event of the batch."""
        return (
            self.events.lazy()
            .group_by("reconciliation_id")
            .agg(pl.col("tenant_id").first(), pl.col("global_position").max().alias("last_position"))
            .collect()
        )
