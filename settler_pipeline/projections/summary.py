"""``reconciliation_summary``: one row per run, its latest attempt's status, counts and outcome.

Counts follow the aggregate exactly (``domain/reconciliation/``): they are those of the latest attempt
(a retry starts from zero); ``matched``, ``proposed`` and ``unmatched_*`` move with review decisions,
``duplicates`` and ``quarantined`` count what the attempt found. As in the aggregate, a review decision
is taken to close an item that is open: the command handlers check that before appending it.

Mergeable state: per run, the newest value of every lifecycle fact together with the attempt it
belongs to (published only when it is the run's current attempt), and the current attempt's counts
(a batch's counts of a newer attempt replace them, of the same attempt add to them). Open proposals are
kept (hidden) with their record counts, because confirming or rejecting one moves that many records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.projections.batch import FETCH_TYPES, FINISH_TYPES, RESET_TYPES, TS, EventBatch
from settler_pipeline.projections.parts import RUN, PartedTable
from settler_pipeline.projections.projection import Column, PartedReadModel

# fmt: off
COUNTS = (
    "matched", "matched_source_records", "unmatched_source", "unmatched_target", "proposed", "quarantined",
    "duplicates",
)
# fmt: on
PROPOSAL = pl.Struct({"match_id": pl.String, "sources": pl.Int64, "targets": pl.Int64})
_STATUS_TYPES = (*RESET_TYPES, *FETCH_TYPES, *FINISH_TYPES, e.RECONCILIATION_SUPERSEDED)
_T = pl.col("event_type")
_STATUS = {
    e.RECONCILIATION_COMPLETED: "completed",
    e.RECONCILIATION_FAILED: "failed",
    e.RECONCILIATION_CANCELLED: "cancelled",
    e.RECONCILIATION_SUPERSEDED: "superseded",
    e.RECONCILIATION_ABANDONED: "abandoned",
}


def _status() -> pl.Expr:
    return _T.replace_strict(_STATUS, default="running", return_dtype=pl.String)


class ReconciliationSummary(PartedReadModel):
    name = "reconciliation_summary"
    version = 1
    doc = "One row per reconciliation run: its latest attempt's status, record counts and outcome."
    key = ("reconciliation_id",)
    # Kept in parts by run, not as one file: an update reads and rewrites only the parts holding the
    # runs its events name (written newest last, so the recent runs that get decisions share a few
    # parts), instead of reading, sorting and writing every run's row (~90 ms at 11.6k runs).
    classes: ClassVar[dict[str, int]] = {"runs": 1_000}
    columns: ClassVar[tuple[Column, ...]] = (
        Column("reconciliation_id", pl.String(), "The run (its stream id in the log)."),
        Column("tenant_id", pl.String(), "The tenant the run belongs to."),
        Column("job_id", pl.String(), "The job spec the run was started from."),
        Column(
            "status",
            pl.String(),
            "running, completed, failed, cancelled, abandoned or superseded (a started run is running; an "
            "abandoned run's process died before it finished; a superseded run was replaced by a newer run "
            "of the same job, tenant and days, and keeps its figures here but has no exceptions or "
            "matches: count live runs with status <> 'superseded').",
        ),
        Column(
            "attempt", pl.Int64(), "The latest attempt: 1, plus one per retry. Every count is this attempt's."
        ),
        Column("period_start", pl.Date(), "First day of the reconciled date range."),
        Column("period_end", pl.Date(), "Last day of the reconciled date range."),
        Column(
            "total_source_records",
            pl.Int64(),
            "Source records the attempt read (valid + quarantined; = the completion summary's "
            "total_source_records), from its SourceRecordsFetched.",
        ),
        Column(
            "total_target_records",
            pl.Int64(),
            "Target records the attempt read (valid + quarantined), from its TargetRecordsFetched.",
        ),
        Column(
            "matched", pl.Int64(), "Matches: automatic + proposals confirmed by a person + manual matches."
        ),
        Column("matched_source_records", pl.Int64(), "Source records in those matches."),
        Column(
            "unmatched_source",
            pl.Int64(),
            "Open unmatched source records (incl. ambiguous, rejected proposals).",
        ),
        Column("unmatched_target", pl.Int64(), "Open unmatched target records."),
        Column("proposed", pl.Int64(), "Proposed matches still waiting for a decision."),
        Column("quarantined", pl.Int64(), "Rows quarantined as unreadable by the attempt (both sides)."),
        Column("duplicates", pl.Int64(), "Duplicate records detected by the attempt (both sides)."),
        Column("errors", pl.Int64(), "Quarantined rows, plus 1 if the attempt failed."),
        Column("started_at", TS, "Event time of ReconciliationStarted."),
        Column("attempt_started_at", TS, "Event time of the latest attempt's start (or retry)."),
        Column("completed_at", TS, "Event time of the latest attempt's finishing event; null while running."),
        Column(
            "duration_ms", pl.Int64(), "Processing time of the latest attempt (from its completion summary)."
        ),
        Column(
            "match_rate",
            pl.Float64(),
            "matched source records / in-range source records (not duplicates), at completion of the latest "
            "attempt (ReconciliationCompleted.summary.match_rate); null unless completed.",
        ),
        Column("last_error_type", pl.String(), "Error class of the latest attempt's failure."),
        Column("last_error_message", pl.String(), "Error message of the latest attempt's failure."),
        Column("last_error_step", pl.String(), "Step that failed: fetch_source, fetch_target or match."),
        Column("last_event_position", pl.Int64(), "Global position of the run's newest event."),
    )
    hidden: ClassVar[dict[str, pl.DataType]] = {
        "_source": pl.Struct({"attempt": pl.Int64, "total": pl.Int64}),
        "_target": pl.Struct({"attempt": pl.Int64, "total": pl.Int64}),
        "_finish": pl.Struct({"attempt": pl.Int64, "at": TS}),
        "_completed": pl.Struct({"attempt": pl.Int64, "duration_ms": pl.Int64, "match_rate": pl.Float64}),
        "_error": pl.Struct(
            {"attempt": pl.Int64, "type": pl.String, "message": pl.String, "step": pl.String}
        ),
        "_open_proposals": pl.List(PROPOSAL),
    }

    def apply(self, table: PartedTable, batch: EventBatch) -> None:
        if batch.height == 0:
            return
        # Only the batch's runs change: their rows are taken out and written again, the others stay.
        state = table.take(table.runs_with_rows(batch.last_positions[RUN]))
        state = state.select(list(self.stored_schema())).cast(self.stored_schema())  # type: ignore[arg-type]
        table.append(self._changed(state, batch).sort("last_event_position"))

    def _changed(self, state: pl.DataFrame, batch: EventBatch) -> pl.DataFrame:
        """The rows of the batch's runs after it, given ``state`` (their rows before it, if any)."""
        final = batch.final_attempts(state.select(RUN, "attempt"), supersessions=False)
        final = final.rename({"attempt": "b_attempt"})
        facts = self._facts(batch)
        deltas, proposals = self._counts(state, batch, final)
        new = (
            batch.last_positions.rename({"tenant_id": "b_tenant_id", "last_position": "b_last_position"})
            .join(final, on=RUN, how="left")
            .join(facts, on=RUN, how="left")
            .join(deltas, on=RUN, how="left")
            .join(proposals, on=RUN, how="left")
        )
        # every run here is the batch's (``state`` holds only the batch's runs)
        merged = state.join(new, on=RUN, how="full", coalesce=True)
        same_attempt = pl.col("attempt") == pl.col("b_attempt")
        out = merged.select(
            RUN,
            pl.coalesce("tenant_id", "b_tenant_id").alias("tenant_id"),
            pl.coalesce("job_id", "b_job_id").alias("job_id"),
            pl.coalesce("b_status", "status").alias("status"),
            pl.coalesce("b_attempt", "attempt").alias("attempt"),
            pl.coalesce("period_start", "b_period_start").alias("period_start"),
            pl.coalesce("period_end", "b_period_end").alias("period_end"),
            *(
                (
                    pl.when(same_attempt).then(pl.col(c)).otherwise(0).fill_null(0)
                    + pl.col(f"d_{c}").fill_null(0)
                )
                .cast(pl.Int64)
                .alias(c)
                for c in COUNTS
            ),
            pl.coalesce("started_at", "b_started_at").alias("started_at"),
            pl.coalesce("b_attempt_started_at", "attempt_started_at").alias("attempt_started_at"),
            pl.coalesce("b_last_position", "last_event_position").alias("last_event_position"),
            *(
                pl.coalesce(f"b{h}", h).alias(h)
                for h in ("_source", "_target", "_finish", "_completed", "_error")
            ),
            pl.col("b_open_proposals")
            .fill_null(pl.lit([], dtype=pl.List(PROPOSAL)))
            .alias("_open_proposals"),
        )
        return _published(out).select(list(self.stored_schema())).cast(self.stored_schema())  # type: ignore[arg-type]

    @staticmethod
    def _facts(batch: EventBatch) -> pl.DataFrame:
        """Per run, the newest lifecycle facts of the batch (each null when the batch has none).

        One aggregation over the batch's lifecycle events in position order, each fact the value of
        the newest (or oldest) event of its types: a filter, sort and aggregation per fact joined
        together were ~35 Polars operations, a fixed cost of every update."""

        def newest(types: Sequence[str], value: pl.Expr, name: str, *, first: bool = False) -> pl.Expr:
            chosen = value.filter(_T.is_in(list(types)))
            return (chosen.first() if first else chosen.last()).alias(name)

        started, date_range = [e.RECONCILIATION_STARTED], pl.col("date_range")
        total = pl.col("count").fill_null(0) + pl.col("quarantined_count").fill_null(0)
        summary, error = pl.col("summary"), pl.col("error")
        failure = pl.struct(
            pl.col("attempt"),
            pl.when(_T == e.RECONCILIATION_ABANDONED)
            .then(pl.lit("RunAbandoned"))
            .otherwise(error.struct.field("type"))
            .alias("type"),
            pl.coalesce(error.struct.field("message"), pl.col("reason")).alias("message"),
            pl.col("step"),
        )
        facts = (
            batch.lifecycle.sort("global_position")
            .group_by(RUN)
            .agg(
                newest(_STATUS_TYPES, _status(), "b_status"),
                newest(started, pl.col("job_id"), "b_job_id", first=True),
                newest(started, pl.col("timestamp"), "b_started_at", first=True),
                *(
                    newest(started, date_range.struct.field(end).str.to_date(strict=False), name, first=True)
                    for end, name in (("start", "b_period_start"), ("end", "b_period_end"))
                ),
                newest(RESET_TYPES, pl.col("timestamp"), "b_attempt_started_at"),
                newest([e.SOURCE_RECORDS_FETCHED], pl.struct("attempt", total.alias("total")), "b_source"),
                newest([e.TARGET_RECORDS_FETCHED], pl.struct("attempt", total.alias("total")), "b_target"),
                newest(FINISH_TYPES, pl.struct("attempt", pl.col("timestamp").alias("at")), "b_finish"),
                newest(
                    [e.RECONCILIATION_COMPLETED],
                    pl.struct(
                        "attempt", summary.struct.field("duration_ms"), summary.struct.field("match_rate")
                    ),
                    "b_completed",
                ),
                newest([e.RECONCILIATION_FAILED, e.RECONCILIATION_ABANDONED], failure, "b_error"),
            )
        )
        return batch.last_positions.select(RUN).join(facts, on=RUN, how="left")

    @staticmethod
    def _counts(state: pl.DataFrame, batch: EventBatch, final: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
        """The batch's count changes for each run's current attempt (``d_<count>`` columns), and each
        touched run's open proposals after the batch."""
        current = final.select(RUN, pl.col("b_attempt").alias("_final"))
        side, reason = pl.col("side"), pl.col("reason")
        unmatched = (_T == e.RECORD_UNMATCHED) & reason.ne_missing("outside_range")
        record_flags = {
            "d_unmatched_source": unmatched & (side == "source"),
            "d_unmatched_target": unmatched & (side == "target"),
            "d_duplicates": _T == e.DUPLICATE_DETECTED,
            "d_quarantined": _T == e.RECORD_QUARANTINED,
        }
        # Aggregate per (run, attempt) first: joining a million rows to the attempts would cost more.
        by_attempt = pl.concat(
            [
                # The logged matches come as sums per run and attempt (and currency) already.
                pl.concat(
                    [
                        batch.matched.select(RUN, "attempt", rows=1, sources=pl.col("source_ids").list.len()),
                        batch.logged.select(RUN, "attempt", "rows", "sources"),
                    ],
                    how="vertical_relaxed",
                )
                .group_by(RUN, "attempt")
                .agg(d_matched=pl.col("rows").sum(), d_matched_source_records=pl.col("sources").sum()),
                batch.proposed.group_by(RUN, "attempt").agg(pl.len().cast(pl.Int64).alias("d_proposed")),
                # flags over all rows, then sums per group (cheaper than conditions group by group)
                batch.records.lazy()
                .select(RUN, "attempt", *(flag.cast(pl.Int64).alias(n) for n, flag in record_flags.items()))
                .group_by(RUN, "attempt")
                .agg(pl.all().sum())
                .collect(),
            ],
            how="diagonal",
        )
        from_bulk = (
            by_attempt.join(current, on=RUN, how="inner")
            .filter(pl.col("attempt") == pl.col("_final"))
            .drop("attempt", "_final")
        )

        reviews = (
            batch.attach_attempt(batch.of_types(*e.REVIEW_EVENT_TYPES), state.select(RUN, "attempt"))
            .join(current, on=RUN, how="left")
            .filter(pl.col("attempt") == pl.col("_final"))
        )
        # Open proposals of the current attempt: the state's (if the attempt did not change) and the batch's.
        carried = (
            state.join(current, on=RUN, how="inner")
            .filter(pl.col("attempt") == pl.col("_final"))
            .select(RUN, pl.col("_open_proposals").alias("p"))
            .explode("p")
            .drop_nulls("p")
            .unnest("p")
            .with_columns(pl.lit(0, pl.Int64).alias("_at"))
        )
        sizes = (pl.col(f"{s}_ids").list.len().cast(pl.Int64).alias(f"{s}s") for s in ("source", "target"))
        new = (
            batch.proposed.select(RUN, "attempt", "match_id", *sizes, pl.col("global_position").alias("_at"))
            .join(current, on=RUN, how="inner")
            .filter(pl.col("attempt") == pl.col("_final"))
            .drop("attempt", "_final")
        )
        candidates = pl.concat([carried.select(new.columns), new])
        dismissed = xid.proposed_match_id_expr("exception_id")
        closes = reviews.filter(
            _T.is_in([e.MATCH_CONFIRMED, e.MATCH_REJECTED])
            | ((_T == e.EXCEPTION_DISMISSED) & xid.is_kind_expr("exception_id", xid.PROPOSED))
        ).with_columns(
            pl.when(_T == e.EXCEPTION_DISMISSED)
            .then(dismissed)
            .otherwise(pl.col("match_id"))
            .alias("match_id")
        )
        # A decision closes the proposal if it was open then; the first decision on it wins.
        found = (
            closes.select(RUN, "match_id", "event_type", "global_position")
            .join(candidates, on=[RUN, "match_id"], how="inner")
            .filter(pl.col("_at") < pl.col("global_position"))
            .sort("global_position")
            .unique([RUN, "match_id"], keep="first", maintain_order=True)
        )
        confirmed, rejected, zero = _T == e.MATCH_CONFIRMED, _T == e.MATCH_REJECTED, pl.lit(0, pl.Int64)
        from_decisions = found.select(
            RUN,
            pl.lit(-1, pl.Int64).alias("d_proposed"),
            pl.when(confirmed).then(1).otherwise(zero).alias("d_matched"),
            pl.when(confirmed).then(pl.col("sources")).otherwise(zero).alias("d_matched_source_records"),
            pl.when(rejected).then(pl.col("sources")).otherwise(zero).alias("d_unmatched_source"),
            pl.when(rejected).then(pl.col("targets")).otherwise(zero).alias("d_unmatched_target"),
        )
        manual = reviews.filter(_T == e.RECORDS_MANUALLY_MATCHED).select(
            RUN,
            pl.lit(1, pl.Int64).alias("d_matched"),
            pl.col("source_ids").list.len().cast(pl.Int64).alias("d_matched_source_records"),
            -pl.col("source_ids").list.len().cast(pl.Int64).alias("d_unmatched_source"),
            -pl.col("target_ids").list.len().cast(pl.Int64).alias("d_unmatched_target"),
        )
        exception_side = pl.col("exception_id").str.split(":").list.get(1, null_on_oob=True)
        dismissed_unmatched = reviews.filter(
            (_T == e.EXCEPTION_DISMISSED) & xid.is_kind_expr("exception_id", xid.UNMATCHED)
        ).select(
            RUN,
            -(exception_side == "source").cast(pl.Int64).alias("d_unmatched_source"),
            -(exception_side == "target").cast(pl.Int64).alias("d_unmatched_target"),
        )
        names = [f"d_{c}" for c in COUNTS]
        parts = [
            p.select(
                RUN,
                *(
                    pl.col(n).cast(pl.Int64) if n in p.columns else pl.lit(0, pl.Int64).alias(n)
                    for n in names
                ),
            )
            for p in (from_bulk, from_decisions, manual, dismissed_unmatched)
        ]
        deltas = pl.concat(parts).group_by(RUN).agg(pl.col(n).sum() for n in names)

        remaining = candidates.join(found, on=[RUN, "match_id"], how="anti")
        proposals = remaining.group_by(RUN).agg(
            pl.struct("match_id", "sources", "targets").sort_by("match_id").alias("b_open_proposals")
        )
        return deltas, proposals


def _published(rows: pl.DataFrame) -> pl.DataFrame:
    """Fill the published columns that come from attempt-tagged facts: shown only for the current attempt."""
    attempt = pl.col("attempt")

    def current(fact: str, field: str) -> pl.Expr:
        value = pl.col(fact).struct.field(field)
        return pl.when(pl.col(fact).struct.field("attempt") == attempt).then(value).otherwise(None)

    return rows.with_columns(
        current("_source", "total").alias("total_source_records"),
        current("_target", "total").alias("total_target_records"),
        current("_finish", "at").alias("completed_at"),
        current("_completed", "duration_ms").alias("duration_ms"),
        current("_completed", "match_rate").alias("match_rate"),
        current("_error", "type").alias("last_error_type"),
        current("_error", "message").alias("last_error_message"),
        current("_error", "step").alias("last_error_step"),
        (pl.col("quarantined") + (pl.col("status") == "failed").cast(pl.Int64)).alias("errors"),
    )
