"""The canonical transaction schema every adapter produces and the matcher consumes.

Money is integer minor units (cents); times are UTC. One row per input record that parsed and
validated; rows that did not are quarantined (see :data:`QUARANTINE_SCHEMA`) and never silently dropped.
"""

from __future__ import annotations

import polars as pl

TRANSACTION_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),  # the external id in the source system (may repeat: duplicates are flagged)
    "amount_minor": pl.Int64(),  # signed integer minor units after the spec's sign convention
    "currency": pl.String(),  # ISO 4217, upper case
    "occurred_at": pl.Datetime("us", "UTC"),
    "reference": pl.String(),  # nullable: an order/invoice/payment reference
    "description": pl.String(),  # nullable: free text / memo
    "counterparty": pl.String(),  # nullable
    "group_key": pl.String(),  # nullable: e.g. the payout id a charge was settled in
    # nullable: further references (other reference columns, references found in text); each
    # counts like ``reference``
    "references": pl.List(pl.String()),
    "line_number": pl.Int64(),  # 1-based data line in the input (header excluded); unique per side
    "in_range": pl.Boolean(),  # inside the run's date range (False: read only as settlement-lag margin)
    "raw": pl.String(),  # the original row as JSON, kept for audit
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "line_number": pl.Int64(),
    "raw": pl.String(),
    "reason": pl.String(),
}

SIDES = ("source", "target")


def empty_transactions() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=TRANSACTION_SCHEMA)
