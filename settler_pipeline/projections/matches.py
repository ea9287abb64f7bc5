"""``reconciliation_matches``: one row per match of each run's latest attempt.

Automatic matches (``RecordMatched``, status ``matched``), proposals (``MatchProposed``, status
``proposed`` until a person decides: ``confirmed``, ``rejected``, or ``dismissed`` when the proposal's
exception is dismissed) and manual matches (``RecordsManuallyMatched``, status ``manual``). A retry drops
the previous attempt's matches. Matching appends a run's results block by block, the completion last:
the matches of an attempt still running are shown as they are appended; once the attempt fails, is
cancelled or abandoned, they are dropped (as on a retry, see ``EventBatch.resets``).

Automatic matches never change: those the published log holds with typed payload columns (nearly
all) are not stored but read from the log's files (``logrows.py``); the others are kept in their own
parts (class ``auto``); a decision rewrites only the small part holding the run's proposals (class
``review``).
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.projections.batch import IDS, TS, EventBatch
from settler_pipeline.projections.parts import RUN, PartedTable
from settler_pipeline.projections.projection import Column, PartedReadModel

_T = pl.col("event_type")
_KEY = (RUN, "match_id")
_DECISIONS = {
    e.MATCH_CONFIRMED: "confirmed",
    e.MATCH_REJECTED: "rejected",
    e.EXCEPTION_DISMISSED: "dismissed",
}


class ReconciliationMatches(PartedReadModel):
    name = "reconciliation_matches"
    version = 3  # 2: manual matches carry their amounts; 3: an attempt that failed shows no matches
    doc = (
        "One row per match of each run's latest attempt (none once it failed, was cancelled or abandoned): "
        "automatic, proposed (and its decision) or manual."
    )
    key = _KEY
    # Automatic matches never change: big parts. A decision rewrites the run's review part: small ones.
    classes: ClassVar[dict[str, int]] = {"auto": 2_000_000, "review": 50_000}
    logged = True
    columns: ClassVar[tuple[Column, ...]] = (
        Column("reconciliation_id", pl.String(), "The run."),
        Column("match_id", pl.String(), "The match (stable: derived from the run, rule and records)."),
        Column("tenant_id", pl.String(), "The run's tenant."),
        Column("attempt", pl.Int64(), "The attempt that made the match (always the run's latest)."),
        Column(
            "rule",
            pl.String(),
            "The matching pass that made it (its name in the job spec); manual by hand.",
        ),
        Column(
            "match_type", pl.String(), "one_to_one, one_to_many, many_to_one (many_to_many only by hand)."
        ),
        Column(
            "status",
            pl.String(),
            "matched (automatic), proposed (waiting), confirmed, rejected, dismissed (proposals), manual.",
        ),
        Column("confidence", pl.Float64(), "The rule's score in [0, 1]; null for manual matches."),
        Column("source_ids", IDS, "Source record ids in the match."),
        Column("target_ids", IDS, "Target record ids in the match."),
        Column("amount", pl.Int64(), "Source amount (sum), minor units (of a manual match: as checked)."),
        Column("target_amount", pl.Int64(), "Target amount (sum), minor units."),
        Column("amount_difference", pl.Int64(), "target_amount - amount, minor units."),
        Column("currency", pl.String(), "ISO currency."),
        Column("matched_at", TS, "Event time of the event that made (or proposed) the match."),
        Column("reviewed_at", TS, "Event time of the decision on a proposal, or of a manual match."),
        Column("reviewed_by", pl.String(), "Who decided on the proposal, or matched by hand."),
    )
    hidden: ClassVar[dict[str, pl.DataType]] = {"_position": pl.Int64()}

    def classify(self, rows: pl.DataFrame) -> pl.Series:
        return rows.select(
            pl.when(pl.col("status") == "matched").then(pl.lit("auto")).otherwise(pl.lit("review"))
        ).to_series()

    def apply(self, table: PartedTable, batch: EventBatch) -> None:
        if batch.height == 0:
            return
        known = table.known_attempts()
        final = batch.final_attempts(known).join(batch.last_positions.select(RUN), on=RUN, how="semi")
        decisions = _decisions(batch)
        schema = self.stored_schema()
        # A retry drops every stored row of the run; a decision only touches its (review-class) proposals.
        reset = table.take(table.runs_with_rows(batch.resets[RUN]))
        decided = table.take(table.runs_with_rows(decisions[RUN]), classes={"review"})
        made = [_made(batch.proposed, "proposed"), _manual(batch, known)]
        rows = pl.concat([reset, decided, *(m.select(list(schema)).cast(schema) for m in made)])  # type: ignore[arg-type]
        table.append(_latest_attempt(_decide(rows, decisions), final))
        # Automatic matches, most of the rows, are never decided on: those the log holds typed are
        # read from it (only counted here), the others go straight to their parts.
        auto = _made(batch.matched, "matched").select(list(schema)).cast(schema)  # type: ignore[arg-type]
        table.append(_latest_attempt(auto, final), cls="auto")
        counted = batch.logged.group_by(RUN, "attempt").agg(pl.col("rows").sum())
        table.set_attempts(final.drop_nulls("attempt"), counted)


def _decide(rows: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with each decided proposal's status: the first decision taken while it was proposed."""
    proposed = pl.col("status") == "proposed"
    first = (
        rows.filter(proposed)
        .select(*_KEY, "_position")
        .join(decisions, on=list(_KEY), how="inner")
        .filter(pl.col("_decided_at") > pl.col("_position"))
        .sort("_decided_at")
        .unique([*_KEY, "_position"], keep="first", maintain_order=True)
    )
    if first.height == 0:
        return rows
    decided = (
        rows.filter(proposed)
        .join(first, on=[*_KEY, "_position"], how="left")
        .with_columns(
            pl.coalesce("_status", "status").alias("status"),
            pl.coalesce("_reviewed_at", "reviewed_at").alias("reviewed_at"),
            pl.coalesce("_reviewed_by", "reviewed_by").alias("reviewed_by"),
        )
        .select(rows.columns)
    )
    return pl.concat([rows.filter(~proposed), decided])


def _latest_attempt(rows: pl.DataFrame, final: pl.DataFrame) -> pl.DataFrame:
    """``rows`` without those of an attempt before their run's current one (usually none: then the
    rows are returned as they are, without copying them)."""
    current = final.select(RUN, pl.col("attempt").alias("_final"))
    keep = (
        rows.select(RUN, "attempt")
        .join(current, on=RUN, how="left", maintain_order="left")
        .select((pl.col("_final").is_null() | (pl.col("attempt") >= pl.col("_final"))).fill_null(False))
        .to_series()
    )
    return rows if keep.all() else rows.filter(keep)


def _made(events: pl.DataFrame, status: str) -> pl.DataFrame:
    """Rows for automatic (``matched``) or proposed matches from their decoded events."""
    return events.select(
        RUN,
        "match_id",
        "tenant_id",
        "attempt",
        "rule",
        "match_type",
        pl.lit(status).alias("status"),
        "confidence",
        "source_ids",
        "target_ids",
        "amount",
        "target_amount",
        "amount_difference",
        "currency",
        pl.col("timestamp").alias("matched_at"),
        pl.lit(None, TS).alias("reviewed_at"),
        pl.lit(None, pl.String).alias("reviewed_by"),
        pl.col("global_position").alias("_position"),
    )


def _manual(batch: EventBatch, known: pl.DataFrame) -> pl.DataFrame:
    """Rows for matches made by hand (in the attempt the run was at)."""
    manual = batch.attach_attempt(batch.of_types(e.RECORDS_MANUALLY_MATCHED), known)

    def arity(ids: str) -> pl.Expr:
        return pl.when(pl.col(ids).list.len() == 1).then(pl.lit("one")).otherwise(pl.lit("many"))

    return manual.select(
        RUN,
        "match_id",
        "tenant_id",
        "attempt",
        pl.lit("manual").alias("rule"),
        pl.concat_str(arity("source_ids"), pl.lit("_to_"), arity("target_ids")).alias("match_type"),
        pl.lit("manual").alias("status"),
        pl.lit(None, pl.Float64).alias("confidence"),
        "source_ids",
        "target_ids",
        # recorded since manual matches are checked against the job's tolerance (null before)
        pl.col("amount").cast(pl.Int64),
        pl.col("target_amount").cast(pl.Int64),
        pl.col("amount_difference").cast(pl.Int64),
        pl.col("currency").cast(pl.String),
        pl.col("timestamp").alias("matched_at"),
        pl.col("timestamp").alias("reviewed_at"),
        pl.col("matched_by").alias("reviewed_by"),
        pl.col("global_position").alias("_position"),
    )


def _decisions(batch: EventBatch) -> pl.DataFrame:
    """``reconciliation_id, match_id, _decided_at, _status, _reviewed_at, _reviewed_by`` of every
    decision on a proposal (confirm, reject, dismissal of ``proposed:<match_id>``)."""
    reviews = batch.of_types(e.MATCH_CONFIRMED, e.MATCH_REJECTED, e.EXCEPTION_DISMISSED)
    dismissed = (_T == e.EXCEPTION_DISMISSED) & xid.is_kind_expr("exception_id", xid.PROPOSED)
    return reviews.filter((_T != e.EXCEPTION_DISMISSED) | dismissed).select(
        RUN,
        pl.when(dismissed)
        .then(xid.proposed_match_id_expr("exception_id"))
        .otherwise(pl.col("match_id"))
        .alias("match_id"),
        pl.col("global_position").alias("_decided_at"),
        _T.replace_strict(_DECISIONS, return_dtype=pl.String).alias("_status"),
        pl.col("timestamp").alias("_reviewed_at"),
        pl.coalesce("confirmed_by", "rejected_by", "dismissed_by").alias("_reviewed_by"),
    )
