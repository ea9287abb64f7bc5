"""The bank statement as a file: each bank line booked on the account of its currency, its time
written in that account's zone, and the canonical frame an adapter reads back from that text."""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from settler_pipeline.domain.matching.normalise import without_placeholders
from settler_pipeline.domain.transactions import TRANSACTION_SCHEMA
from settler_pipeline.sample import text
from settler_pipeline.sample.rates import BANK_ACCOUNTS, OTHER_ACCOUNT

TARGET_RAW_COLUMNS: Final = (
    "Date",
    "Account",
    "Transaction ID",
    "Description",
    "Reference",
    "Amount",
    "Currency",
)
DATE_FORMAT: Final = "%d/%m/%Y %H:%M"


def _zone_of(currency: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    account, zone = pl.lit(OTHER_ACCOUNT[0]), pl.lit(OTHER_ACCOUNT[1])
    for code, (number, name) in BANK_ACCOUNTS.items():
        account = pl.when(currency == code).then(pl.lit(number)).otherwise(account)
        zone = pl.when(currency == code).then(pl.lit(name)).otherwise(zone)
    return account, zone


def _zones() -> list[str]:
    return sorted({zone for _, zone in (*BANK_ACCOUNTS.values(), OTHER_ACCOUNT)})


def statement_rows(rng: np.random.Generator, bank: pl.DataFrame, start_day: int) -> pl.DataFrame:
    """The raw statement (:data:`TARGET_RAW_COLUMNS`, plus ``line`` and ``occurred_us``): each line
    booked at a random minute of its UTC day, written as local time of its account's zone."""
    account, zone = _zone_of(pl.col("currency"))
    minute = rng.integers(0, 24 * 60, size=bank.height)
    frame = bank.with_columns(
        _instant=pl.from_epoch(
            (bank["day"] + start_day) * 86_400 + minute * 60, time_unit="s"
        ).dt.replace_time_zone("UTC"),
        Account=account,
        _zone=zone,
    )
    local = pl.lit(None, dtype=pl.String)
    back = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    for name in _zones():
        written = pl.col("_instant").dt.convert_time_zone(name).dt.strftime(DATE_FORMAT)
        local = pl.when(pl.col("_zone") == name).then(written).otherwise(local)
    frame = frame.with_columns(Date=local)
    # What a reader of the statement gets back from the local text (the earlier instant when the
    # clocks went back), so the canonical frame is exactly what the adapter reads.
    for name in _zones():
        parsed = (
            pl.col("Date")
            .str.to_datetime(DATE_FORMAT, time_unit="us")
            .dt.replace_time_zone(name, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
        back = pl.when(pl.col("_zone") == name).then(parsed).otherwise(back)
    ids = pl.concat_str([pl.lit("BT"), (pl.col("line") + 40_000_000).cast(pl.String).str.zfill(10)])
    return frame.with_columns(
        back.alias("occurred_at"),
        ids.alias("Transaction ID"),
        pl.col("description").alias("Description"),
        pl.col("reference").alias("Reference"),
        text.decimal_text(bank["amount"], thousands=True).alias("Amount"),
        pl.col("currency").alias("Currency"),
    )


def _trimmed(column: str) -> pl.Expr:
    # As an adapter reads text: surrounding whitespace removed, blank is null.
    value = pl.col(column).str.strip_chars()
    return pl.when(value.str.len_bytes() > 0).then(value)


def canonical_target(rows: pl.DataFrame) -> pl.DataFrame:
    """The bank rows as an adapter reads them with the sample job spec: the booking time converted
    from the account's zone, placeholders no reference, no counterparty or group key."""
    return rows.select(
        record_id=pl.col("Transaction ID"),
        amount_minor=pl.col("amount"),
        currency=pl.col("Currency"),
        occurred_at=pl.col("occurred_at"),
        reference=without_placeholders(_trimmed("Reference")),
        description=_trimmed("Description"),
        counterparty=pl.lit(None, dtype=pl.String),
        group_key=pl.lit(None, dtype=pl.String),
        references=pl.lit(None, dtype=pl.List(pl.String)),
        line_number=pl.col("line"),
        in_range=pl.lit(True),
        raw=pl.struct(list(TARGET_RAW_COLUMNS)).struct.json_encode(),
    ).cast(TRANSACTION_SCHEMA)  # type: ignore[arg-type]
