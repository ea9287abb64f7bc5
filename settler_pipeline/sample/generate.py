"""Generating both sides with their ground truth, vectorised (a million rows per side in seconds)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import numpy as np
import polars as pl

from settler_pipeline.errors import ValidationError
from settler_pipeline.sample.bank import bank_lines
from settler_pipeline.sample.charges import Charges
from settler_pipeline.sample.data import DECOYS_SCHEMA, TRUTH_SCHEMA, TWINS_SCHEMA, SampleData
from settler_pipeline.sample.processor import SOURCE_RAW_COLUMNS, canonical_source, source_rows
from settler_pipeline.sample.rates import DEFAULT_CURRENCY_MIX, HARD_CASE_RATES, SUPPORTED_CURRENCIES
from settler_pipeline.sample.statement import TARGET_RAW_COLUMNS, canonical_target, statement_rows
from settler_pipeline.sample.text import CATALOGUE_PRICES, random_ids


def _check_arguments(n_source: int, days: int, currency_mix: Mapping[str, float]) -> None:
    if n_source < 0:
        raise ValidationError(f"n_source must be >= 0, got {n_source}")
    if days < 1:
        raise ValidationError(f"days must be >= 1, got {days}")
    unknown = sorted(set(currency_mix) - set(SUPPORTED_CURRENCIES))
    if unknown:
        raise ValidationError(
            f"unsupported currencies in currency_mix: {', '.join(unknown)}",
            hint=f"use two-decimal currencies: {', '.join(SUPPORTED_CURRENCIES)}",
        )
    if not currency_mix or any(w <= 0 for w in currency_mix.values()):
        raise ValidationError("currency_mix needs at least one currency, each with a positive weight")


def generate_sample(
    n_source: int,
    *,
    seed: int,
    start: date,
    days: int,
    currency_mix: Mapping[str, float] | None = None,
    hard_cases: bool = True,
) -> SampleData:
    """Generate ``n_source`` processor rows (duplicates included) created in ``[start, start + days)``
    and the bank statement that settles them, with ground truth.

    Promises: deterministic for a given ``seed`` and arguments; line numbers 1..n per side in
    file order (by time; duplicated rows appended at the end); ``in_range`` true everywhere (the
    caller's date range decides); every true link in ``truth``, every designed tie in ``twins``,
    every decoy line in ``decoys``.
    """
    mix = dict(DEFAULT_CURRENCY_MIX if currency_mix is None else currency_mix)
    _check_arguments(n_source, days, mix)
    rates = dict(HARD_CASE_RATES) if hard_cases else dict.fromkeys(HARD_CASE_RATES, 0.0)
    rng = np.random.default_rng(seed)
    currencies = list(mix)
    weights = np.array([mix[c] for c in currencies], dtype=np.float64)
    weights /= weights.sum()
    n_dup = round(rates["duplicate"] * n_source)
    charges = Charges.draw(
        rng,
        n_source - n_dup,
        days=days,
        n_currencies=len(currencies),
        p=weights,
        rates=rates,
        catalogue=CATALOGUE_PRICES,
    )
    start_day = (start - date(1970, 1, 1)).days

    payout_ids = random_ids(rng, int(charges.payout.max(initial=-1)) + 1, "po_1", 23)
    source_raw, first_line, charge_ids = source_rows(rng, charges, currencies, payout_ids, start_day, n_dup)
    bank = bank_lines(
        rng, charges, currencies, weights, payout_ids, first_line, charge_ids, days=days, rates=rates
    )
    target_raw = statement_rows(rng, bank, start_day)
    truth = (
        bank.filter(pl.col("link").is_not_null())
        .group_by("link")
        .agg(
            source_lines=pl.col("source_lines").first().list.sort(),
            target_lines=pl.col("line").sort(),
            kind=pl.col("kind").first(),
            phenomenon=pl.col("phenomenon").first(),
            common_amount=pl.col("common").first(),
            _first=pl.col("line").min(),
        )
        .sort("_first")
        .select(
            link_id=pl.concat_str([pl.lit("L"), pl.col("_first").cast(pl.String).str.zfill(7)]),
            source_lines="source_lines",
            target_lines="target_lines",
            kind="kind",
            phenomenon="phenomenon",
            common_amount="common_amount",
        )
        .cast(TRUTH_SCHEMA)  # type: ignore[arg-type]
    )
    twins = pl.DataFrame(
        {"source_line_a": first_line[charges.twin_a], "source_line_b": first_line[charges.twin_b]},
        schema=TWINS_SCHEMA,
    ).sort("source_line_a")
    decoys = bank.filter(pl.col("decoy")).select(target_line="line").cast(DECOYS_SCHEMA)  # type: ignore[arg-type]
    return SampleData(
        source=canonical_source(source_raw),
        target=canonical_target(target_raw),
        truth=truth,
        twins=twins,
        decoys=decoys,
        source_raw=source_raw.select(SOURCE_RAW_COLUMNS),
        target_raw=target_raw.select(TARGET_RAW_COLUMNS),
    )
