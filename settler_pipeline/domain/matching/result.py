"""What the matcher returns: matches, unmatched records with a reason, and duplicates.

Every frame has a fixed schema (below) and a deterministic row order, so the same inputs and
configuration always give equal frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

MatchStatus = Literal["matched", "proposed"]
MatchType = Literal["one_to_one", "one_to_many", "many_to_one"]

STATUS_MATCHED: Final = "matched"
STATUS_PROPOSED: Final = "proposed"

# Reasons an unmatched record carries (exactly these strings).
REASON_MISSING_SETTLEMENT: Final = "missing_settlement"
REASON_MISSING_TRANSACTION: Final = "missing_transaction"
REASON_AMOUNT_MISMATCH: Final = "amount_mismatch"
REASON_DATE_MISMATCH: Final = "date_mismatch"
REASON_CURRENCY_MISMATCH: Final = "currency_mismatch"
REASON_AMBIGUOUS: Final = "ambiguous"
REASON_OUTSIDE_RANGE: Final = "outside_range"

UNMATCHED_REASONS: Final = (
    REASON_MISSING_SETTLEMENT,
    REASON_MISSING_TRANSACTION,
    REASON_AMOUNT_MISMATCH,
    REASON_DATE_MISMATCH,
    REASON_CURRENCY_MISMATCH,
    REASON_AMBIGUOUS,
    REASON_OUTSIDE_RANGE,
)

MATCH_SCHEMA: dict[str, pl.DataType] = {
    "match_id": pl.String(),  # uuid5 of run id + rule + sorted record keys of both sides
    "rule": pl.String(),  # the name of the pass that made the match
    "status": pl.String(),  # "matched" (auto-confirmed) | "proposed" (needs review)
    "match_type": pl.String(),  # "one_to_one" | "one_to_many" | "many_to_one"
    "confidence": pl.Float64(),  # a score in [0, 1], not money
    "source_ids": pl.List(pl.String()),  # record ids, in line order
    "target_ids": pl.List(pl.String()),
    "source_lines": pl.List(pl.Int64()),  # ascending
    "target_lines": pl.List(pl.Int64()),
    "source_amount_minor": pl.Int64(),  # sum over the source records
    "target_amount_minor": pl.Int64(),
    "amount_difference_minor": pl.Int64(),  # target - source
    "currency": pl.String(),
    "matched_fields": pl.List(pl.String()),  # evidence, e.g. ["reference", "amount", "date"]
    "date_difference_days": pl.Int64(),  # latest target day - latest source day (UTC calendar days)
}
"""One row per match; sorted by the first source line (each line is in at most one match)."""

UNMATCHED_SCHEMA: dict[str, pl.DataType] = {
    "side": pl.String(),  # "source" | "target"
    "record_id": pl.String(),
    "line_number": pl.Int64(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "reason": pl.String(),  # one of UNMATCHED_REASONS
    # ambiguous: the competing counterparts; *_mismatch: the near-miss counterparts; else empty
    "candidate_ids": pl.List(pl.String()),
    # The candidate that came closest (null when none was near) and why it was rejected; see
    # settler_pipeline.domain.matching.explain for how it is chosen and the rejection values.
    "closest_id": pl.String(),
    "closest_amount_minor": pl.Int64(),
    "closest_currency": pl.String(),
    "closest_occurred_at": pl.Datetime("us", "UTC"),
    "closest_reference": pl.String(),
    "closest_rejection": pl.String(),
}
"""One row per record left unmatched; sorted by side then line number."""

DUPLICATE_SCHEMA: dict[str, pl.DataType] = {
    "side": pl.String(),
    "record_id": pl.String(),
    "line_number": pl.Int64(),  # the extra occurrence (excluded from matching)
    "first_line_number": pl.Int64(),  # the first occurrence (the one that took part in matching)
}
"""One row per extra occurrence of a record id on one side; sorted by side then line number."""


@dataclass(frozen=True)
class MatchResult:
    """The outcome of :func:`~settler_pipeline.domain.matching.matcher.match_records`.

    Every input record is in exactly one bucket: a ``matched`` match, a ``proposed`` match,
    ``unmatched`` or ``duplicates`` (see :meth:`accounting`).
    """

    matches: pl.DataFrame
    unmatched: pl.DataFrame
    duplicates: pl.DataFrame
    source_input_count: int
    target_input_count: int
    source_in_range: dict[str, int]
    """The run's own source records (``in_range``) in ``matched`` and in ``proposed`` matches: what
    the match rate counts (margin records in a match are counterparts, not the run's records)."""

    def accounting(self) -> dict[str, dict[str, int]]:
        """Per side: ``input``, ``matched``, ``proposed``, ``unmatched``, ``duplicate`` record counts,
        with ``input == matched + proposed + unmatched + duplicate``."""
        out: dict[str, dict[str, int]] = {}
        # Summed in one pass over two columns: filtering the matches would copy every column of them.
        sums = self.matches.select(
            pl.col(f"{side}_lines")
            .list.len()
            .filter(pl.col("status") == status)
            .sum()
            .alias(f"{side} {status}")
            for side in ("source", "target")
            for status in (STATUS_MATCHED, STATUS_PROPOSED)
        ).row(0, named=True)
        for side, total in (("source", self.source_input_count), ("target", self.target_input_count)):
            out[side] = {
                "input": total,
                "matched": int(sums[f"{side} {STATUS_MATCHED}"] or 0),
                "proposed": int(sums[f"{side} {STATUS_PROPOSED}"] or 0),
                "unmatched": self.unmatched.filter(pl.col("side") == side).height,
                "duplicate": self.duplicates.filter(pl.col("side") == side).height,
            }
        return out
