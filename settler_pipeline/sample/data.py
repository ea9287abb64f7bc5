"""What the generator returns: both sides, their raw export rows and the ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "link_id": pl.String(),
    "source_lines": pl.List(pl.Int64()),
    "target_lines": pl.List(pl.Int64()),
    # one_to_one | payout (many_to_one) | split_payment (one_to_many) | partial_payment (part of the
    # instalments arrived) | twin (indistinguishable by design) | currency_mismatch | amount_mismatch
    # | date_mismatch (true links no rule may auto-match)
    "kind": pl.String(),
    # What makes the link hard: the kind, or for one_to_one how the bank line shows the reference
    # (reference_field, reference_noise, reference_in_memo, reference_in_punctuated_memo,
    # reference_is_charge_id, reference_placeholder, reference_missing)
    "phenomenon": pl.String(),
    "common_amount": pl.Boolean(),  # the charge is at a catalogue price many others share
}
TWINS_SCHEMA: dict[str, pl.DataType] = {"source_line_a": pl.Int64(), "source_line_b": pl.Int64()}
DECOYS_SCHEMA: dict[str, pl.DataType] = {"target_line": pl.Int64()}


@dataclass(frozen=True)
class SampleData:
    """Generated sides (canonical schema), their raw export rows, and the ground truth.

    ``truth`` (:data:`TRUTH_SCHEMA`) lists every true link by line numbers; ``twins``
    (:data:`TWINS_SCHEMA`) the pairs of source lines that are indistinguishable by design;
    ``decoys`` (:data:`DECOYS_SCHEMA`) the bank lines that look like a settlement but belong to none.
    ``source_raw`` / ``target_raw`` are the rows as the exports carry them (all strings, see
    :func:`~settler_pipeline.sample.files.write_sample_files`); row ``i`` of a raw frame is line
    ``i + 1`` of its side.
    """

    source: pl.DataFrame
    target: pl.DataFrame
    truth: pl.DataFrame
    twins: pl.DataFrame
    decoys: pl.DataFrame
    source_raw: pl.DataFrame
    target_raw: pl.DataFrame
