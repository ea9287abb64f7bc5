"""``error_hotspots_view``: where errors happen, per tenant × error type × step.

Three sources: failed attempts (``ReconciliationFailed``: error type, message, step), abandoned ones
(``ReconciliationAbandoned``: their process died, so they did not complete either; error type
``abandoned``, the furthest step their events show, the reason as message) and quarantined rows
(``RecordQuarantined``), counted as error type ``quarantine:<reason up to the first ':'>`` at step
``fetch_source`` / ``fetch_target``. Every attempt counts: this is history, not current state.
Merge: counts add, first/last seen take min/max, the sample message is the newest occurrence's.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.projections.batch import TS, EventBatch
from settler_pipeline.projections.projection import Column, TableReadModel

_KEY = ("tenant_id", "error_type", "step")


class ErrorHotspots(TableReadModel):
    name = "error_hotspots_view"
    version = 2
    doc = "Errors per tenant, error type and step: failed and abandoned attempts and quarantined rows."
    key = _KEY
    columns: ClassVar[tuple[Column, ...]] = (
        Column("tenant_id", pl.String(), "The tenant."),
        Column(
            "error_type",
            pl.String(),
            "Error class of a failed attempt (e.g. NotFoundError), abandoned for an attempt whose process "
            "died before it finished, or quarantine:<reason> for unreadable rows.",
        ),
        Column(
            "step",
            pl.String(),
            "fetch_source, fetch_target or match; of an abandoned attempt, the furthest step its events "
            "show (start, match or record_results).",
        ),
        Column("count", pl.Int64(), "Occurrences (failed or abandoned attempts, or quarantined rows)."),
        Column("first_seen", TS, "Event time of the first occurrence."),
        Column("last_seen", TS, "Event time of the latest occurrence."),
        Column("sample_message", pl.String(), "The message of the most recently recorded occurrence."),
    )

    def apply(self, state: pl.DataFrame, batch: EventBatch) -> pl.DataFrame:
        failed = batch.of_types(e.RECONCILIATION_FAILED).select(
            "global_position",
            "tenant_id",
            pl.col("error").struct.field("type").fill_null("unknown").alias("error_type"),
            pl.col("step").fill_null("unknown"),
            "timestamp",
            pl.col("error").struct.field("message").alias("message"),
        )
        abandoned = batch.of_types(e.RECONCILIATION_ABANDONED).select(
            "global_position",
            "tenant_id",
            pl.lit("abandoned").alias("error_type"),
            pl.col("step").fill_null("unknown"),
            "timestamp",
            pl.col("reason").alias("message"),
        )
        reason = pl.col("reason").fill_null("unknown")
        quarantined = batch.records.filter(pl.col("event_type") == e.RECORD_QUARANTINED).select(
            "global_position",
            "tenant_id",
            pl.concat_str(pl.lit("quarantine:"), reason.str.split(":").list.first().str.strip_chars()).alias(
                "error_type"
            ),
            pl.concat_str(pl.lit("fetch_"), pl.col("side").fill_null("unknown")).alias("step"),
            "timestamp",
            reason.alias("message"),
        )
        occurrences = pl.concat([failed, abandoned, quarantined])
        if occurrences.height == 0:
            return state
        new = occurrences.group_by(_KEY).agg(
            pl.len().cast(pl.Int64).alias("count_new"),
            pl.col("timestamp").min().alias("first_seen_new"),
            pl.col("timestamp").max().alias("last_seen_new"),
            pl.col("message").sort_by("global_position").last().alias("sample_message_new"),
        )
        merged = state.join(new, on=list(_KEY), how="full", coalesce=True)
        return merged.select(
            *_KEY,
            (pl.col("count").fill_null(0) + pl.col("count_new").fill_null(0)).alias("count"),
            pl.min_horizontal("first_seen", "first_seen_new").alias("first_seen"),
            pl.max_horizontal("last_seen", "last_seen_new").alias("last_seen"),
            # The batch comes after the stored rows, so its newest message is the newest overall.
            pl.when(pl.col("count_new").is_not_null())
            .then(pl.col("sample_message_new"))
            .otherwise(pl.col("sample_message"))
            .alias("sample_message"),
        ).cast(self.stored_schema())  # type: ignore[arg-type]
