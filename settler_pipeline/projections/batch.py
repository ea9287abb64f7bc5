"""A chunk of the event log as the read models see it: reconciliation events in position order, with
the payload fields they need as typed columns, read once and shared by every read model.

The fields come from the log's typed payload columns (only those listed here are read; the JSON text
is not), so a chunk costs a columnar read; rows stored without typed columns are decoded from their
JSON (:mod:`settler_pipeline.projections.payloads`). Lifecycle and review events are few; the
per-record events (``RecordMatched`` above all) are most of the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, Final

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.projections.payloads import SMALL_DOCUMENTS, decode_payloads, upcast_payloads
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.payloads import PAYLOAD_SCHEMA, TYPED
from settler_pipeline.store.rollups import ROWS as ROLLED_ROWS
from settler_pipeline.store.rollups import SOURCES as ROLLED_SOURCES

TS: Final = pl.Datetime("us", "UTC")
IDS: Final = pl.List(pl.String)

RESET_TYPES: Final = (e.RECONCILIATION_STARTED, e.RECONCILIATION_RETRIED)
FETCH_TYPES: Final = (e.SOURCE_RECORDS_FETCHED, e.TARGET_RECORDS_FETCHED)
UNFINISHED_TYPES: Final = (e.RECONCILIATION_FAILED, e.RECONCILIATION_CANCELLED, e.RECONCILIATION_ABANDONED)
"""How an attempt ends without completing (its results do not count)."""
FINISH_TYPES: Final = (e.RECONCILIATION_COMPLETED, *UNFINISHED_TYPES)

# The payload fields each kind of event contributes to the read models (names only: their types are
# the typed payload columns', which come from the payload models). Lifecycle and review events share
# one set (a field a type lacks is null).
# fmt: off
LIFECYCLE_FIELDS: Final = (
    "attempt", "job_id", "date_range", "count", "quarantined_count", "summary", "error", "step",
    "reason", "match_id", "source_ids", "target_ids", "exception_id", "confirmed_by", "rejected_by",
    "matched_by", "dismissed_by", "amount", "target_amount", "amount_difference", "currency",
)
# fmt: on

RECORD_TYPES: Final = (e.RECORD_UNMATCHED, e.DUPLICATE_DETECTED, e.RECORD_QUARANTINED)

# RecordMatched / MatchProposed: most of the log, so only what the read models use (all but the
# matcher's evidence and the records a proposal carries for review).
MATCH_FIELDS: Final = tuple(
    name
    for name in e.RecordMatched.model_fields
    if name not in ("matched_fields", "date_difference_days", "source_records", "target_records")
)

# RecordUnmatched / DuplicateRecordDetected / RecordQuarantined.
RECORD_FIELDS: Final = (
    "attempt",
    "side",
    "record_id",
    "line_number",
    "amount",
    "currency",
    "reason",
    "closest_id",
    "closest_amount",
    "closest_currency",
    "closest_reference",
    "closest_rejection",
)

# RecordMatched events whose rows reconciliation_matches reads from the log (logrows.py) are never
# materialised: a chunk reads them as sums per run, attempt and currency (what the summary's counts,
# the matches' run index and the analyst columns' scale need), aggregated inside the scan.
LOGGED_FIELDS: Final = ("attempt", "source_ids", "currency")
LOGGED_SCHEMA: Final = {
    "reconciliation_id": pl.String(),
    "tenant_id": pl.String(),
    "attempt": pl.Int64(),
    "currency": pl.String(),
    "rows": pl.Int64(),  # logged matches
    "sources": pl.Int64(),  # source ids in them
    "last_position": pl.Int64(),
    "max_timestamp": pl.Datetime("us", "UTC"),
}

BULK_FIELDS: Final = tuple(dict.fromkeys(MATCH_FIELDS + RECORD_FIELDS))
FIELDS: Final = tuple(dict.fromkeys(LIFECYCLE_FIELDS + BULK_FIELDS))
"""Every payload field a read model reads."""

ENVELOPE: Final = ("global_position", "reconciliation_id", "event_type", "tenant_id", "timestamp")
"""Envelope columns of every decoded frame (``aggregate_id`` is exposed as ``reconciliation_id``)."""

KINDS: Final[dict[str, tuple[pl.Expr, tuple[str, ...]]]] = {
    "lifecycle": (~pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES)), LIFECYCLE_FIELDS),
    "matched": (pl.col("event_type") == e.RECORD_MATCHED, MATCH_FIELDS),
    "proposed": (pl.col("event_type") == e.MATCH_PROPOSED, MATCH_FIELDS),
    "records": (pl.col("event_type").is_in(list(RECORD_TYPES)), RECORD_FIELDS),
}
"""The kinds of events a chunk materialises: which rows, with which payload fields."""

TYPED_KINDS: Final = ("proposed", "records")  # read from the typed columns of rollups' other rows
TYPED_TYPES: Final = (e.MATCH_PROPOSED, *RECORD_TYPES)


class EventBatch:
    """Reconciliation events with positions in ``(after, upto]``, in position order, with the payload
    fields the read models read (:data:`FIELDS`) as typed columns."""

    def __init__(self, events: pl.DataFrame, *, after: int, upto: int) -> None:
        self.events = events
        self.after = after
        self.upto = upto

    @classmethod
    def read(
        cls, store: EventStore, after: int, upto: int, *, tenant_id: str | None = None, logged_upto: int = 0
    ) -> EventBatch:
        """Read positions ``(after, upto]`` of ``store`` (only reconciliation events).

        ``RecordMatched`` events at positions up to ``logged_upto`` whose typed columns hold their
        payload are *logged* (:attr:`logged`, not in :attr:`matched`): their rows are read from the
        log's files when the read model is read, so only sums of :data:`LOGGED_FIELDS` of them are
        read here (:data:`LOGGED_SCHEMA`).

        Every other event (~6% of a run's log) comes with its kind's payload fields: proposals and
        records of a rollup's other rows from their typed columns, the rest decoded from their JSON
        (upcast first when stored at an older version)."""
        reconciliation = pl.col("aggregate_type") == e.AGGREGATE_TYPE
        keys = ("global_position", pl.col("aggregate_id").alias("reconciliation_id"), *ENVELOPE[2:])
        served = served_filter(store.registry, logged_upto)
        group = (pl.col("aggregate_id").alias("reconciliation_id"), "tenant_id", "attempt", "currency")
        # Segments with a rollup (store/rollups.py) give their logged matches as sums made when the
        # segment was written, and their other rows apart: those matches are not read at all.
        sums, rows, rest = store.read_rolled(
            after,
            upto,
            rolled_upto=logged_upto,
            version=store.registry.current_version(e.RECORD_MATCHED),
            tenant_id=tenant_id,
            payload_fields=LOGGED_FIELDS,
            rest_fields=BULK_FIELDS,
        )
        rows, rest = rows.filter(reconciliation), rest.filter(reconciliation)
        read_typed = pl.col(TYPED).fill_null(False) & pl.col("event_type").is_in(TYPED_TYPES)

        # Over the other segments: the logged matches (nine rows in ten) as sums grouped while the
        # streaming engine scans, and every other row with its JSON text (a typed column is decoded
        # over every row of a segment, null or not: the proposals' fields ~1.8 s of CPU at 10M
        # events). Over the rollups' other rows: proposals and records from their typed columns, each
        # kind with its own fields; the few lifecycle events from their JSON (their ~36 nested
        # Parquet columns, null on nine rows in ten, cost more to read than their documents to parse).
        logged, rolled, texts, *typed_kinds = pl.collect_all(
            [
                rows.filter(served)
                .group_by(group)
                .agg(
                    pl.len().cast(pl.Int64).alias("rows"),
                    pl.col("source_ids").list.len().sum().cast(pl.Int64).alias("sources"),
                    pl.col("global_position").max().alias("last_position"),
                    pl.col("timestamp").max().alias("max_timestamp"),
                ),
                sums.group_by(group).agg(
                    pl.col(ROLLED_ROWS).sum().alias("rows"),
                    pl.col(ROLLED_SOURCES).sum().alias("sources"),
                    pl.col("global_position").max().alias("last_position"),
                    pl.col("timestamp").max().alias("max_timestamp"),
                ),
                pl.concat(
                    [
                        rows.filter(~served).select(*keys, "event_version", "data"),
                        rest.filter(~read_typed).select(*keys, "event_version", "data"),
                    ]
                ),
                *(
                    rest.filter(read_typed & KINDS[kind][0]).select(*keys, *KINDS[kind][1])
                    for kind in TYPED_KINDS
                ),
            ],
            engine="streaming",
        )
        if rolled.height:
            logged = (
                pl.concat([logged, rolled.cast(logged.schema)])
                .group_by("reconciliation_id", *group[1:])
                .agg(pl.col("rows", "sources").sum(), pl.col("last_position", "max_timestamp").max())
            )
        texts = upcast_payloads(texts, store.registry).drop("event_version")

        def decode(kind: str) -> pl.DataFrame:
            rows_of, fields = KINDS[kind]
            return decode_payloads(texts, {f: PAYLOAD_SCHEMA[f] for f in fields}, rows_of)

        if texts.height <= SMALL_DOCUMENTS:  # parsed by Polars in well under a millisecond each
            parsed = [decode(kind) for kind in KINDS]
        else:
            # Each kind's documents are parsed by one DuckDB query on one core: the kinds side by side
            # use both (the first chunk's decoding is otherwise the only work while nothing else can run).
            with ThreadPoolExecutor(max_workers=len(KINDS), thread_name_prefix="settler-decode") as pool:
                parsed = list(pool.map(decode, KINDS))
        # in position order (the rollups' rows come segment by segment, the parsed ones after them)
        read = dict(zip(TYPED_KINDS, typed_kinds, strict=True))
        decoded = {
            kind: _in_position_order(pl.concat([read[kind], from_json]) if kind in read else from_json)
            for kind, from_json in zip(KINDS, parsed, strict=True)
        }
        events = pl.concat([frame.select(ENVELOPE) for frame in decoded.values()]).sort("global_position")
        batch = cls(events, after=after, upto=upto)
        batch.__dict__["logged"] = logged.select(list(LOGGED_SCHEMA)).cast(LOGGED_SCHEMA)  # type: ignore[arg-type]
        decoded["lifecycle"] = _with_start_attempt(decoded["lifecycle"])
        batch.__dict__.update(decoded)
        return batch

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, *, after: int = 0, upto: int | None = None) -> EventBatch:
        """A batch from stored-event rows (columns as :meth:`EventStore.read`, payloads in ``data``,
        at their current versions), e.g. in tests."""
        rows = frame.filter(pl.col("aggregate_type") == e.AGGREGATE_TYPE).sort("global_position")
        last = upto if upto is not None else int(rows["global_position"].max() or after)  # type: ignore[arg-type]
        decoded = decode_payloads(
            rows.select("global_position", "aggregate_id", *ENVELOPE[2:], "data"),
            {name: PAYLOAD_SCHEMA[name] for name in FIELDS},
        )
        return cls(decoded.rename({"aggregate_id": "reconciliation_id"}), after=after, upto=last)

    def since(self, position: int) -> EventBatch:
        """The part of this batch after ``position`` (selected frames are filtered, not selected again).
        The logged matches are sums, which cannot be cut: a batch holding some is cut only at its
        ends (the caller reads chunks that end at every position it cuts at)."""
        if position <= self.after:
            return self
        if position >= self.upto:
            part = EventBatch(self.events.clear(), after=self.upto, upto=self.upto)
            for name in ("lifecycle", "matched", "logged", "proposed", "records"):
                if name in self.__dict__:
                    part.__dict__[name] = self.__dict__[name].clear()
            return part
        if self.logged.height:
            raise ValueError(f"a batch with logged matches cannot be cut at {position}")
        later = pl.col("global_position") > position
        part = EventBatch(self.events.filter(later), after=position, upto=self.upto)
        for name in ("lifecycle", "matched", "proposed", "records"):
            if name in self.__dict__:
                part.__dict__[name] = self.__dict__[name].filter(later)
        return part

    def decode(self) -> EventBatch:
        """Select every kind of event now (rather than on first use); returns the batch."""
        _ = self.lifecycle, self.matched, self.logged, self.proposed, self.records, self.last_positions
        return self

    @property
    def height(self) -> int:
        """Events in the batch (the logged matches included)."""
        return self.events.height + int(self.logged["rows"].sum())

    @cached_property
    def max_timestamp(self) -> Any:
        """The newest event time in the batch (None when empty)."""
        times = (self.events["timestamp"].max(), self.logged["max_timestamp"].max())
        newest = [t for t in times if t is not None]
        return max(newest) if newest else None

    def _kind(self, rows: pl.Expr, fields: Sequence[str]) -> pl.DataFrame:
        return self.events.filter(rows).select(*ENVELOPE, *fields)

    @cached_property
    def lifecycle(self) -> pl.DataFrame:
        """Lifecycle and review events with their payload fields (:data:`LIFECYCLE_FIELDS`)."""
        rows = ~pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES))
        return _with_start_attempt(self._kind(rows, LIFECYCLE_FIELDS))

    @cached_property
    def matched(self) -> pl.DataFrame:
        """``RecordMatched`` events (most of the log) with their payload fields (:data:`MATCH_FIELDS`),
        but for the :attr:`logged` ones."""
        return self._kind(pl.col("event_type") == e.RECORD_MATCHED, MATCH_FIELDS)

    @cached_property
    def logged(self) -> pl.DataFrame:
        """``RecordMatched`` events read from the log when their read model is read (see :meth:`read`;
        none unless read so), as sums per run, tenant, attempt and currency (:data:`LOGGED_SCHEMA`)."""
        return pl.DataFrame(schema=LOGGED_SCHEMA)

    @cached_property
    def proposed(self) -> pl.DataFrame:
        """``MatchProposed`` events with their payload fields (:data:`MATCH_FIELDS`)."""
        return self._kind(pl.col("event_type") == e.MATCH_PROPOSED, MATCH_FIELDS)

    @cached_property
    def records(self) -> pl.DataFrame:
        """Unmatched, duplicate and quarantined records with their payload fields (:data:`RECORD_FIELDS`)."""
        return self._kind(pl.col("event_type").is_in(list(RECORD_TYPES)), RECORD_FIELDS)

    def of_types(self, *event_types: str) -> pl.DataFrame:
        """Decoded lifecycle/review events of the given types."""
        return self.lifecycle.filter(pl.col("event_type").is_in(list(event_types)))

    @cached_property
    def resets(self) -> pl.DataFrame:
        """Starts, retries, supersessions and attempts ended without completing (failed, cancelled,
        abandoned): ``reconciliation_id, global_position, attempt, timestamp``.

        A supersession or an attempt's unfinished end counts as an empty attempt after that one, so the
        read models that keep only a run's latest attempt (exceptions, matches) drop everything of a
        superseded run, and the results an attempt appended before it failed (matching appends them
        block by block, the completion last) are never shown as the run's."""
        empty_after = pl.col("event_type").is_in([e.RECONCILIATION_SUPERSEDED, *UNFINISHED_TYPES])
        return self.of_types(*RESET_TYPES, e.RECONCILIATION_SUPERSEDED, *UNFINISHED_TYPES).select(
            "reconciliation_id",
            "global_position",
            pl.when(empty_after).then(pl.col("attempt") + 1).otherwise(pl.col("attempt")).alias("attempt"),
            "timestamp",
        )

    def final_attempts(self, known: pl.DataFrame, *, supersessions: bool = True) -> pl.DataFrame:
        """The attempt each run is at after this batch: the newest start/retry (or supersession or end
        without completing, see :attr:`resets`, unless ``supersessions`` is false), else ``known``
        (``reconciliation_id, attempt`` from earlier batches)."""
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
        rows = self.events.select(
            "reconciliation_id", "tenant_id", pl.col("global_position").alias("last_position")
        )
        if self.logged.height:
            rows = pl.concat([rows, self.logged.select(rows.columns)])
        return (
            rows.lazy()
            .group_by("reconciliation_id")
            .agg(pl.col("tenant_id").first(), pl.col("last_position").max())
            .collect()
        )


def served_filter(registry: EventRegistry, upto: int) -> pl.Expr:
    """Log rows served as ``reconciliation_matches`` rows read from the log's files: typed
    ``RecordMatched`` events at the current version of their type, at positions up to ``upto``."""
    version = registry.current_version(e.RECORD_MATCHED)
    return (
        (pl.col("event_type") == e.RECORD_MATCHED)
        & (pl.col("aggregate_type") == e.AGGREGATE_TYPE)
        & pl.col(TYPED).fill_null(False)
        & (pl.lit(True) if version is None else pl.col("event_version") == version)
        & (pl.col("global_position") <= upto)
    )


def _in_position_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by position, in one piece. The typed rows of a chunk's rollups mostly arrive
    in order already (segments of a batch seldom overlap), in one piece per rollup: joining the
    pieces costs less than a sort, which gathers every column row by row even then."""
    if frame["global_position"].is_sorted():
        return frame.rechunk()
    return frame.sort("global_position")


def _with_start_attempt(lifecycle: pl.DataFrame) -> pl.DataFrame:
    """ReconciliationStarted of older writers may lack ``attempt``: a start is attempt 1."""
    return lifecycle.with_columns(
        pl.when(pl.col("event_type") == e.RECONCILIATION_STARTED)
        .then(pl.col("attempt").fill_null(1))
        .otherwise(pl.col("attempt"))
        .alias("attempt")
    )
