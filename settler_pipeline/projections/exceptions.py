"""``reconciliation_exceptions``: the open review items of every run's latest attempt.

Same items, ids and rules as the aggregate's ``open_exceptions``:

* ``unmatched:<side>:<record_id>`` — a record without a counterpart (kind ``ambiguous`` when several
  candidates tied), and every record of a rejected proposal (reason ``proposal_rejected``);
* ``proposed:<match_id>`` — a proposed match waiting for a decision (reason: the rule that proposed it);
* ``duplicate:<side>:<line>`` and ``quarantined:<side>:<line>``.

An item opens with its event and closes with ``MatchConfirmed`` / ``MatchRejected`` (proposals),
``RecordsManuallyMatched`` (unmatched records) or ``ExceptionDismissed`` (any item); a retry drops the
previous attempt's items. ``age_days`` is derived on read from the read model's as-of time (the newest
event time it has applied), so a rebuild and an update give the same ages and an update never has to
rewrite every row just because time passed.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.projections.batch import IDS, TS, EventBatch
from settler_pipeline.projections.parts import RUN, PartedTable
from settler_pipeline.projections.projection import Column, PartedReadModel

_T = pl.col("event_type")
_KEY = (RUN, "exception_id")
_CLOSEST = ("closest_id", "closest_amount", "closest_currency", "closest_reference", "closest_rejection")
# Items that are not an unmatched record have no closest candidate.
_NO_CLOSEST = tuple(pl.lit(None, pl.Int64 if c == "closest_amount" else pl.String).alias(c) for c in _CLOSEST)


class ReconciliationExceptions(PartedReadModel):
    name = "reconciliation_exceptions"
    version = 4  # 3: an attempt that failed has no open items; 4: closest_currency
    doc = (
        "Open review items of each run's latest attempt (none once it failed, was cancelled or "
        "abandoned): unmatched records, proposals, duplicates, etc."
    )
    key = _KEY
    # Closing an item rewrites the part holding its run: parts stay small enough for that to be cheap.
    # At 10M events (~700k open items), decisions on 13 runs read and rewrote 73k rows in parts of
    # 50k (~130 ms of an update); in parts of 10k, ~5k rows. A rebuild writes five times as many
    # files: 3.4-3.8 s of CPU against 3.4-3.7 s (medians 3.62 and 3.45 s, four alternations each).
    classes: ClassVar[dict[str, int]] = {"open": 10_000}
    derived = frozenset({"age_days"})
    columns: ClassVar[tuple[Column, ...]] = (
        Column("reconciliation_id", pl.String(), "The run."),
        Column(
            "exception_id",
            pl.String(),
            "unmatched:<side>:<record_id>, proposed:<match_id>, duplicate:<side>:<line> or "
            "quarantined:<side>:<line> (the id ExceptionDismissed takes).",
        ),
        Column("tenant_id", pl.String(), "The run's tenant."),
        Column("attempt", pl.Int64(), "The attempt that opened the item (always the run's latest)."),
        Column("kind", pl.String(), "unmatched, ambiguous, proposed, duplicate or quarantined."),
        Column("side", pl.String(), "source or target; null for a proposal (it has both)."),
        Column(
            "record_ids",
            IDS,
            "Records concerned: the record; a proposal's source ids, then its target ids; empty for a "
            "quarantined row.",
        ),
        Column(
            "reason",
            pl.String(),
            "Why it is open: the matcher's reason (e.g. missing_settlement, amount_mismatch), "
            "proposal_rejected, the proposing rule, duplicate, or the quarantine reason.",
        ),
        Column(
            "amount",
            pl.Int64(),
            "Amount in minor units (the record's; a proposal's source total); null if unknown.",
        ),
        Column("currency", pl.String(), "ISO currency of the amount."),
        Column(
            "closest_id",
            pl.String(),
            "Unmatched records: the other side's record that came closest (null if none was near).",
        ),
        Column("closest_amount", pl.Int64(), "Its amount in minor units (of closest_currency)."),
        Column(
            "closest_currency",
            pl.String(),
            "Its currency: another than currency when it was rejected as currency_differs.",
        ),
        Column("closest_reference", pl.String(), "Its reference."),
        Column(
            "closest_rejection",
            pl.String(),
            "Why it was rejected: matched_elsewhere, currency_differs, reference_conflict, "
            "amount_difference, date_outside_window or tied.",
        ),
        Column("opened_at", TS, "Event time of the event that opened the item."),
        Column(
            "age_days",
            pl.Int64(),
            "Whole days from opened_at to the read model's as-of time (its newest applied event time); "
            "computed on read.",
        ),
    )
    hidden: ClassVar[dict[str, pl.DataType]] = {"_position": pl.Int64(), "_sources": pl.Int64()}

    def published_columns(self, rows: pl.LazyFrame, as_of_time: datetime | None) -> pl.LazyFrame:
        as_of = pl.lit(as_of_time, dtype=TS) if as_of_time is not None else pl.lit(None, dtype=TS)
        age = (as_of - pl.col("opened_at")).dt.total_days().cast(pl.Int64)
        return super().published_columns(rows.with_columns(age.alias("age_days")), as_of_time)

    def apply(self, table: PartedTable, batch: EventBatch) -> None:
        if batch.height == 0:
            return
        final = batch.final_attempts(table.known_attempts()).join(
            batch.last_positions.select(RUN), on=RUN, how="semi"
        )
        reviews = batch.of_types(*e.REVIEW_EVENT_TYPES)
        closes = _closes(reviews)
        rejects = reviews.filter(_T == e.MATCH_REJECTED)
        changed = pl.concat([closes[RUN], rejects[RUN], batch.resets[RUN]])
        old = table.take(table.runs_with_rows(changed))
        opened = _opens(batch).select(old.columns)
        candidates = pl.concat([old, opened], how="vertical_relaxed") if old.height else opened
        reopened = _reopened(candidates, rejects, closes).select(old.columns)
        if reopened.height:
            candidates = pl.concat([candidates, reopened], how="vertical_relaxed")
        kept = candidates.filter(_still_open(candidates, closes, final))
        table.append(kept.select(list(self.stored_schema())))
        table.set_attempts(final.drop_nulls("attempt"))


def _item_hash() -> pl.Expr:
    """A 64-bit hash of each row's item key (run and exception id)."""
    return pl.col(RUN).hash(1) ^ pl.col("exception_id").hash(2)


def _still_open(candidates: pl.DataFrame, closes: pl.DataFrame, final: pl.DataFrame) -> pl.Series:
    """Which rows of ``candidates`` stay: per item the newest row (by position), unless a decision
    closed the item at or after that row, or its attempt is older than its run's current one
    (``final``).

    Comparing the two strings of every row's key (to find each item's newest row and the items a
    decision closed) cost more than the rest of the read model, so rows are first told apart by a
    hash of their key: a row whose hash no other row has is its item's only row (equal keys hash
    equally), and a row whose hash no close has is not closed. Only the rows sharing a hash (an item
    opened again, or a collision) or having a close's hash are compared by key."""
    hashed = candidates.select(_item_hash())[:, 0]
    rows = candidates.with_row_index("_row").select("_row", *_KEY, "_position")
    dropped = []
    shared = hashed.is_duplicated()
    if shared.any():
        same = rows.filter(shared)
        newest = same.sort("_position", maintain_order=True).unique(
            list(_KEY), keep="last", maintain_order=True
        )
        dropped.append(same.join(newest.select("_row"), on="_row", how="anti")["_row"])
    latest_close = closes.group_by(_KEY).agg(pl.col("_closed_at").max())
    if latest_close.height:
        maybe = hashed.is_in(latest_close.select(_item_hash())[:, 0].implode())
        closed = (
            rows.filter(maybe)
            .join(latest_close, on=list(_KEY), how="inner")
            .filter(~(pl.col("_closed_at") < pl.col("_position")).fill_null(False))
        )
        dropped.append(closed["_row"])
    current = final.select(RUN, pl.col("attempt").alias("_final"))
    keep = (
        candidates.select(RUN, "attempt")
        .join(current, on=RUN, how="left", maintain_order="left")
        .select((pl.col("_final").is_null() | (pl.col("attempt") >= pl.col("_final"))).fill_null(False))
        .to_series()
    )
    gone = pl.concat(dropped) if dropped else None
    return keep.scatter(gone, False) if gone is not None and gone.len() else keep


def _opens(batch: EventBatch) -> pl.DataFrame:
    """Items opened by the batch's per-record events."""
    side, reason = pl.col("side"), pl.col("reason")
    unmatched = _T == e.RECORD_UNMATCHED
    duplicate = _T == e.DUPLICATE_DETECTED
    kind = (
        pl.when(unmatched)
        .then(pl.lit(xid.UNMATCHED))
        .when(duplicate)
        .then(pl.lit(xid.DUPLICATE))
        .otherwise(pl.lit(xid.QUARANTINED))
    )
    # an unmatched record is keyed by its id, a duplicate or quarantined row by its line
    key = pl.when(unmatched).then(pl.col("record_id")).otherwise(pl.col("line_number").cast(pl.String))
    records = (
        batch.records.filter(reason.ne_missing("outside_range") | ~unmatched)
        .with_columns(kind.alias("_kind"))
        .select(
            RUN,
            xid.record_item_expr("_kind", side, key).alias("exception_id"),
            "tenant_id",
            "attempt",
            pl.when(unmatched & (reason == "ambiguous"))
            .then(pl.lit("ambiguous"))
            .otherwise(pl.col("_kind"))
            .alias("kind"),
            side,
            pl.when(unmatched | duplicate)
            .then(pl.concat_list(pl.col("record_id")))
            .otherwise(pl.lit([], dtype=IDS))
            .alias("record_ids"),
            pl.when(duplicate).then(pl.lit("duplicate")).otherwise(reason).alias("reason"),
            *(pl.when(unmatched).then(pl.col(c)).alias(c) for c in ("amount", "currency", *_CLOSEST)),
            pl.col("timestamp").alias("opened_at"),
            pl.col("global_position").alias("_position"),
            pl.lit(None, pl.Int64).alias("_sources"),
        )
    )
    proposals = batch.proposed.select(
        RUN,
        xid.proposed_expr("match_id").alias("exception_id"),
        "tenant_id",
        "attempt",
        pl.lit("proposed").alias("kind"),
        pl.lit(None, pl.String).alias("side"),
        pl.concat_list(pl.col("source_ids").fill_null([]), pl.col("target_ids").fill_null([])).alias(
            "record_ids"
        ),
        pl.col("rule").alias("reason"),
        "amount",
        "currency",
        *_NO_CLOSEST,
        pl.col("timestamp").alias("opened_at"),
        pl.col("global_position").alias("_position"),
        pl.col("source_ids").list.len().cast(pl.Int64).alias("_sources"),
    )
    return pl.concat([records, proposals], how="vertical_relaxed")


def _closes(reviews: pl.DataFrame) -> pl.DataFrame:
    """``reconciliation_id, exception_id, _closed_at`` for every item a review decision closes."""
    by_match = reviews.filter(_T.is_in([e.MATCH_CONFIRMED, e.MATCH_REJECTED])).select(
        RUN, xid.proposed_expr("match_id").alias("exception_id"), "global_position"
    )
    dismissed = reviews.filter(_T == e.EXCEPTION_DISMISSED).select(RUN, "exception_id", "global_position")
    manual = reviews.filter(_T == e.RECORDS_MANUALLY_MATCHED)
    by_hand = [
        manual.select(RUN, pl.col(ids).alias("record_id"), "global_position")
        .explode("record_id")
        .drop_nulls("record_id")
        .select(
            RUN,
            xid.unmatched_expr(pl.lit(side), "record_id").alias("exception_id"),
            "global_position",
        )
        for side, ids in (("source", "source_ids"), ("target", "target_ids"))
    ]
    return pl.concat([by_match, dismissed, *by_hand]).rename({"global_position": "_closed_at"})


def _reopened(candidates: pl.DataFrame, rejects: pl.DataFrame, closes: pl.DataFrame) -> pl.DataFrame:
    """The records of each rejected proposal that was open when rejected, as unmatched items."""
    if rejects.height == 0:
        return candidates.clear()
    rejected = rejects.select(
        RUN,
        xid.proposed_expr("match_id").alias("exception_id"),
        pl.col("global_position").alias("_rejected_at"),
        pl.col("timestamp").alias("_rejected_time"),
    )
    proposals = candidates.filter(pl.col("kind") == "proposed").join(rejected, on=list(_KEY), how="inner")
    proposals = proposals.filter(pl.col("_position") < pl.col("_rejected_at"))
    # Not open any more if an earlier decision closed it after it was proposed.
    earlier = (
        proposals.join(closes, on=list(_KEY), how="inner")
        .filter(
            (pl.col("_closed_at") > pl.col("_position")) & (pl.col("_closed_at") < pl.col("_rejected_at"))
        )
        .select(*_KEY, "_rejected_at")
    )
    proposals = (
        proposals.join(earlier, on=[*_KEY, "_rejected_at"], how="anti")
        .sort("_rejected_at")
        .unique(list(_KEY), keep="first", maintain_order=True)
    )
    records = proposals.with_columns(pl.int_ranges(0, pl.col("record_ids").list.len()).alias("_i")).explode(
        "record_ids", "_i"
    )
    side = pl.when(pl.col("_i") < pl.col("_sources")).then(pl.lit("source")).otherwise(pl.lit("target"))
    return records.drop_nulls("record_ids").select(
        RUN,
        xid.unmatched_expr(side, "record_ids").alias("exception_id"),
        "tenant_id",
        "attempt",
        pl.lit("unmatched").alias("kind"),
        side.alias("side"),
        pl.concat_list(pl.col("record_ids")).alias("record_ids"),
        pl.lit("proposal_rejected").alias("reason"),
        pl.lit(None, pl.Int64).alias("amount"),
        "currency",
        *_NO_CLOSEST,
        pl.col("_rejected_time").alias("opened_at"),
        pl.col("_rejected_at").alias("_position"),
        pl.lit(None, pl.Int64).alias("_sources"),
    )
