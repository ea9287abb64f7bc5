"""The processor's export (Stripe-like balance transactions) of generated charges."""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from settler_pipeline.domain.transactions import TRANSACTION_SCHEMA
from settler_pipeline.sample.charges import Charges, IntArray
from settler_pipeline.sample.text import customers, decimal_text, random_ids

SOURCE_RAW_COLUMNS: Final = (
    "id",
    "created",
    "amount",
    "currency",
    "description",
    "reporting_category",
    "customer_name",
    "invoice_number",
    "payout",
)


def source_rows(
    rng: np.random.Generator,
    charges: Charges,
    currencies: list[str],
    payout_ids: pl.Series,
    start_day: int,
    n_dup: int,
) -> tuple[pl.DataFrame, IntArray, pl.Series]:
    """The processor export (raw rows with ``line`` and ``uid``), each charge's first line and each
    charge's id (by charge index)."""
    n = len(charges.amount)
    invoice = pl.Series(np.arange(1, n + 1, dtype=np.int64)).cast(pl.String).str.zfill(6)
    invoice_ref = ("INV-" + invoice).scatter(np.concatenate([charges.twin_a, charges.twin_b]), None)
    refunds = np.flatnonzero(charges.refund)
    record_id = random_ids(rng, n, "ch_3", 23).scatter(refunds, random_ids(rng, len(refunds), "re_3", 23))
    payout = pl.Series("payout", [None] * n, dtype=pl.String)
    if len(payout_ids):
        payout = payout_ids.gather(np.maximum(charges.payout, 0)).scatter(
            np.flatnonzero(charges.payout < 0), None
        )
    created_us = (start_day * 86_400 + charges.created_s) * 1_000_000
    by_time = pl.DataFrame(
        {
            "uid": np.arange(n, dtype=np.int64),
            "created_us": created_us,
            "id": record_id,
            "amount_minor": charges.amount,
            "currency": pl.Series(currencies).gather(charges.currency).str.to_lowercase(),
            "customer_name": customers(charges),
            "invoice_number": invoice_ref,
            "refund": charges.refund,
            "payout": payout,
        }
    ).sort("created_us", "uid")
    rows = by_time.select(
        "uid",
        "amount_minor",
        "created_us",
        "id",
        created=pl.from_epoch(pl.col("created_us"), time_unit="us").dt.strftime("%Y-%m-%d %H:%M:%S"),
        amount=decimal_text(by_time["amount_minor"], thousands=False),
        currency="currency",
        description=pl.when(pl.col("invoice_number").is_null())
        .then(pl.lit("Card payment"))
        .when(pl.col("refund"))
        .then(pl.concat_str([pl.lit("Refund for "), pl.col("invoice_number")]))
        .otherwise(pl.concat_str([pl.lit("Invoice "), pl.col("invoice_number")])),
        reporting_category=pl.when(pl.col("refund")).then(pl.lit("refund")).otherwise(pl.lit("charge")),
        customer_name="customer_name",
        invoice_number="invoice_number",
        payout="payout",
    )
    if n_dup:
        # An overlapping second export appended: some rows again, same ids, at the end of the file.
        again = (
            np.sort(rng.choice(n, size=min(n_dup, n), replace=False)) if n else np.zeros(0, dtype=np.int64)
        )
        rows = pl.concat([rows, rows[pl.Series(again)]])
    rows = rows.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
    first_line = np.zeros(n, dtype=np.int64)
    first_rows = rows.head(n)
    first_line[first_rows["uid"].to_numpy()] = first_rows["line"].to_numpy()
    return rows, first_line, record_id


def canonical_source(rows: pl.DataFrame) -> pl.DataFrame:
    """The source rows as an adapter reads them with the sample job spec (typed values taken from
    the generator, which are exactly what the raw strings say; the invoice number is the reference,
    the charge id a further reference; the raw row is kept as JSON)."""
    return rows.select(
        record_id=pl.col("id"),
        amount_minor=pl.col("amount_minor"),
        currency=pl.col("currency").str.to_uppercase(),
        occurred_at=pl.from_epoch(pl.col("created_us"), time_unit="us").dt.replace_time_zone("UTC"),
        reference=pl.col("invoice_number"),
        description=pl.col("description"),
        counterparty=pl.col("customer_name"),
        group_key=pl.col("payout"),
        references=pl.concat_list("id"),
        line_number=pl.col("line"),
        in_range=pl.lit(True),
        raw=pl.struct(list(SOURCE_RAW_COLUMNS)).struct.json_encode(),
    ).cast(TRANSACTION_SCHEMA)  # type: ignore[arg-type]
