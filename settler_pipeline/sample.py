"""Realistic sample data with ground truth: a payment processor's export against a bank statement.

:func:`generate_sample` builds both sides in the canonical
:data:`~settler_pipeline.domain.transactions.TRANSACTION_SCHEMA`, the raw export rows they come from,
and the true links between them, vectorised (a million rows per side in a few seconds).

**Source** (a Stripe-like processor): charges ``ch_3...`` (refunds ``re_3...``) for invoices
``INV-000123``, a customer name as counterparty, a description such as ``Invoice INV-000123``, and
for charges settled in a batch the payout id ``po_1...`` as group key.

**Target** (the bank statement): own ids ``BT...``, dates without a time, the invoice reference in
the Reference column, or only inside the memo, or nowhere; payouts arrive as one credit line.

Hard cases (``hard_cases=True``) at the rates of :data:`HARD_CASE_RATES`:

==================== ==========================================================================
``duplicate``        of source rows: a row exported twice (same id), appended at the end
``payout_member``    of charges: settled in a payout of 2-25 charges (sum = one bank line;
                     payout id in the Reference 60 %, only in the memo 30 %, nowhere 10 %)
``twin``             of charges: pairs of identical charges (same customer, amount, day, no
                     reference) against one bank line (half the pairs) or two identical lines
``source_orphan``    of charges: never settled (no bank line)
``target_orphan``    bank-only lines (account fees, interest, internal transfers), relative to
                     the number of charges
``currency_mismatch`` of charges: settled in another currency (converted amount), reference kept
``amount_mismatch``  of charges: short-paid (30-70 % of the amount), reference kept
``date_mismatch``    of charges: settled 12-20 days late, reference kept
``reference_noise``  of ordinary settlements: reference with other case, spaces, prefix
                     (``inv 000123``, ``000123``, ``REF-000123``, ...)
``reference_in_memo`` of ordinary settlements: no Reference, the invoice only inside the memo
``reference_missing`` of ordinary settlements: no reference anywhere (amount and date only)
``fee``              of ordinary settlements: the bank line is 1-50 cents less than the charge
``refund``           of ordinary settlements: a refund (negative on both sides)
==================== ==========================================================================

Settlement lag is 0-3 days (:data:`LAG_PROBABILITIES`), so lines of the last days fall after the
date range. With ``hard_cases=False`` every charge is an ordinary settlement with a clean reference
(lags still apply). Amounts are log-normal (median 45.00) with 8 % at common catalogue prices.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from settler_pipeline.domain.matching.config import (
    AmountDatePass,
    DateWindow,
    FuzzyPass,
    GroupPass,
    MatchConfig,
    ReferencePass,
    Tolerance,
)
from settler_pipeline.domain.transactions import TRANSACTION_SCHEMA
from settler_pipeline.errors import ValidationError

IntArray = npt.NDArray[np.int64]

HARD_CASE_RATES: Final[Mapping[str, float]] = {
    "duplicate": 0.005,
    "payout_member": 0.10,
    "twin": 0.002,
    "source_orphan": 0.005,
    "target_orphan": 0.005,
    "currency_mismatch": 0.002,
    "amount_mismatch": 0.001,
    "date_mismatch": 0.001,
    "reference_noise": 0.15,
    "reference_in_memo": 0.18,
    "reference_missing": 0.04,
    "fee": 0.05,
    "refund": 0.03,
}
"""Rates of the hard cases (see the module docstring for what each one is a fraction of)."""

LAG_PROBABILITIES: Final = (0.40, 0.35, 0.15, 0.10)
"""Probability of a settlement lag of 0, 1, 2, 3 days."""

DEFAULT_CURRENCY_MIX: Final[Mapping[str, float]] = {"USD": 0.6, "EUR": 0.25, "GBP": 0.15}

# Currencies with two decimal places (the raw exports write amounts as "12.34").
SUPPORTED_CURRENCIES: Final = ("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK")

TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "link_id": pl.String(),
    "source_lines": pl.List(pl.Int64()),
    "target_lines": pl.List(pl.Int64()),
    # one_to_one | payout (many_to_one) | twin (indistinguishable by design) |
    # currency_mismatch | amount_mismatch | date_mismatch (true links no rule may auto-match)
    "kind": pl.String(),
}
TWINS_SCHEMA: dict[str, pl.DataType] = {"source_line_a": pl.Int64(), "source_line_b": pl.Int64()}

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
TARGET_RAW_COLUMNS: Final = ("Date", "Transaction ID", "Description", "Reference", "Amount", "Currency")

# Category codes of a charge.
_NORMAL, _PAYOUT, _TWIN, _SRC_ORPHAN, _CUR_MISMATCH, _AMT_MISMATCH, _LATE = range(7)
# How an ordinary settlement shows its reference on the bank line.
_REF_FIELD, _REF_NOISY, _REF_MEMO, _REF_NONE = range(4)

_FIRST_NAMES_TEXT = (
    "Olivia Liam Emma Noah Amelia Oliver Ava Elijah Sophia Lucas Isabella Mateo Mia Levi Charlotte "
    "Ethan Harper Leo Evelyn James Aria Henry Luna Jack Ella Theo Nora Arthur Chloe Oscar Ines Hugo "
    "Lea Jonas Clara Finn Emil Ida Felix Mila Samuel Sara Adam Lina Omar Yara Ravi Priya Kenji Aiko"
)
_FIRST_NAMES = tuple(_FIRST_NAMES_TEXT.split())
_LAST_NAMES_TEXT = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker "
    "Hall Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts "
    "Muller Schmidt Schneider Fischer Weber Dubois Laurent Rossi Bianchi Tanaka"
)
_LAST_NAMES = tuple(_LAST_NAMES_TEXT.split())
# Reference-field noise: (prefix, suffix) around the invoice digits.
_NOISY_REFERENCES = (("inv-", ""), ("INV ", ""), ("", ""), ("REF-", ""), (" INV-", " "), ("inv", ""))
# Bank memos: (head, with name, middle, with invoice digits, tail, with name at the end).
_MEMO_TEMPLATES = (
    ("Payment ", False, "INV-", True, " thanks", False),  # reference only in the memo
    ("", True, " INV", True, " FASTER PMT", False),
    ("TRANSFER REF:", False, "INV-", True, " ", True),
    ("TRANSFER FROM ", True, "", False, "", False),  # no reference anywhere
    ("REFUND TO ", True, "", False, "", False),
    ("PAYMENT FROM ", True, "", False, "", False),  # the reference is in its own column
)
_COMPANY_SUFFIXES = ("Ltd", "GmbH", "LLC", "Inc", "SARL", "BV")
_CATALOGUE_PRICES = np.array([499, 999, 1499, 1900, 1999, 2500, 2900, 4900, 9900, 19900], dtype=np.int64)
_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


@dataclass(frozen=True)
class SampleData:
    """Generated sides (canonical schema), their raw export rows, and the ground truth.

    ``truth`` (:data:`TRUTH_SCHEMA`) lists every true link by line numbers; ``twins``
    (:data:`TWINS_SCHEMA`) the pairs of source lines that are indistinguishable by design.
    ``source_raw`` / ``target_raw`` are the rows as the exports carry them (all strings, see
    :func:`write_sample_files`); row ``i`` of a raw frame is line ``i + 1`` of its side.
    """

    source: pl.DataFrame
    target: pl.DataFrame
    truth: pl.DataFrame
    twins: pl.DataFrame
    source_raw: pl.DataFrame
    target_raw: pl.DataFrame


def sample_match_config() -> MatchConfig:
    """The matcher configuration the generated data is designed for: references tolerate bank fees
    up to 50 cents and settle 0-7 days later; payout groups run before amount + date so a payout's
    charges are not paired one by one with stray bank lines; fuzzy text only proposes."""
    return MatchConfig(
        passes=[
            ReferencePass(
                tolerance=Tolerance(absolute_minor=50), date_window=DateWindow(days_before=0, days_after=7)
            ),
            GroupPass(direction="many_to_one", date_window=DateWindow(days_before=0, days_after=5)),
            AmountDatePass(tolerance=Tolerance(), date_window=DateWindow(days_before=0, days_after=3)),
            FuzzyPass(
                tolerance=Tolerance(percent=Decimal(2)), date_window=DateWindow(days_before=0, days_after=5)
            ),
        ]
    )


def _random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> pl.Series:
    """``prefix`` + ``length`` random base-62 characters (collisions are astronomically unlikely)."""
    chars = _ALPHABET[rng.integers(0, len(_ALPHABET), size=(n, length))]
    body = pl.Series(np.ascontiguousarray(chars).view(f"S{length}").ravel()).cast(pl.String)
    return (prefix + body) if n else pl.Series([], dtype=pl.String)


def _pick(rng: np.random.Generator, n: int, rates: Mapping[str, float], names: list[str]) -> IntArray:
    """A category index per item: ``names[i]`` with probability ``rates[names[i]]``, else the last."""
    p = [rates[name] for name in names]
    return np.asarray(rng.choice(len(p) + 1, size=n, p=[*p, 1.0 - sum(p)]), dtype=np.int64)


def _amounts(rng: np.random.Generator, n: int) -> IntArray:
    amounts = np.clip(np.rint(rng.lognormal(np.log(4500.0), 1.0, size=n)), 100, 2_000_000).astype(np.int64)
    catalogue = rng.random(n) < 0.08
    amounts[catalogue] = _CATALOGUE_PRICES[rng.integers(0, len(_CATALOGUE_PRICES), size=int(catalogue.sum()))]
    return amounts


def _decimal_text(minor: pl.Series, *, thousands: bool) -> pl.Series:
    """Minor units as a signed decimal string: ``-12.34``, or ``1,234.56`` with thousands separators."""
    frame = pl.DataFrame({"minor": minor})
    units = pl.col("minor").abs() // 100
    cents = (pl.col("minor").abs() % 100).cast(pl.String).str.zfill(2)
    sign = pl.when(pl.col("minor") < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    text = frame.select(pl.concat_str([sign, units.cast(pl.String), pl.lit("."), cents])).to_series()
    big = np.flatnonzero(np.abs(minor.to_numpy()) >= 100_000)
    if not thousands or len(big) == 0:
        return text
    # Only amounts of 1,000.00 and more need separators: format that minority in groups of three.
    groups = [(units // 1000**k % 1000).cast(pl.String) for k in range(5)]
    grouped = groups[0]
    for k in range(1, 5):
        parts = [groups[k]]
        for lower in range(k - 1, -1, -1):
            parts += [pl.lit(","), groups[lower].str.zfill(3)]
        grouped = pl.when(units >= 1000**k).then(pl.concat_str(parts)).otherwise(grouped)
    formatted = frame[pl.Series(big)].select(pl.concat_str([sign, grouped, pl.lit("."), cents])).to_series()
    return text.scatter(big, formatted)


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
    caller's date range decides); every true link in ``truth``, every designed tie in ``twins``.
    """
    mix = dict(DEFAULT_CURRENCY_MIX if currency_mix is None else currency_mix)
    _check_arguments(n_source, days, mix)
    rates = dict(HARD_CASE_RATES) if hard_cases else dict.fromkeys(HARD_CASE_RATES, 0.0)
    rng = np.random.default_rng(seed)
    currencies = list(mix)
    weights = np.array([mix[c] for c in currencies], dtype=np.float64)
    weights /= weights.sum()
    n_dup = round(rates["duplicate"] * n_source)
    charges = _Charges.draw(
        rng, n_source - n_dup, days=days, n_currencies=len(currencies), p=weights, rates=rates
    )
    start_day = (start - date(1970, 1, 1)).days

    payout_ids = _random_ids(rng, int(charges.payout.max(initial=-1)) + 1, "po_1", 23)
    source_raw, first_line = _source_rows(rng, charges, currencies, payout_ids, start_day, n_dup)
    bank = _bank_lines(rng, charges, currencies, weights, payout_ids, first_line, days=days, rates=rates)
    target_raw = bank.select(
        "line",
        Date=pl.from_epoch(pl.col("day") + start_day, time_unit="d").dt.strftime("%d/%m/%Y"),
        **{
            "Transaction ID": pl.concat_str(
                [pl.lit("BT"), (pl.col("line") + 40_000_000).cast(pl.String).str.zfill(10)]
            )
        },
        Description=pl.col("description"),
        Reference=pl.col("reference"),
        Amount=_decimal_text(bank["amount"], thousands=True),
        Currency=pl.col("currency"),
    )
    truth = (
        bank.filter(pl.col("source_lines").is_not_null())
        .select(
            link_id=pl.concat_str([pl.lit("L"), pl.col("line").cast(pl.String).str.zfill(7)]),
            source_lines=pl.col("source_lines").list.sort(),
            target_lines=pl.concat_list("line"),
            kind="kind",
        )
        .cast(TRUTH_SCHEMA)  # type: ignore[arg-type]
    )
    twins = pl.DataFrame(
        {"source_line_a": first_line[charges.twin_a], "source_line_b": first_line[charges.twin_b]},
        schema=TWINS_SCHEMA,
    ).sort("source_line_a")
    return SampleData(
        source=_canonical_source(source_raw),
        target=_canonical_target(target_raw, bank, start_day),
        truth=truth,
        twins=twins,
        source_raw=source_raw.select(SOURCE_RAW_COLUMNS),
        target_raw=target_raw.select(TARGET_RAW_COLUMNS),
    )


@dataclass(frozen=True)
class _Charges:
    """The processor's charges (before duplicates), one array entry per charge, in creation order
    except that each second twin sits wherever it was drawn (rows are sorted by time later)."""

    category: IntArray
    created_s: IntArray  # seconds since the start of the range
    amount: IntArray
    currency: IntArray  # index into the currency mix
    first_name: IntArray
    last_name: IntArray
    company: npt.NDArray[np.bool_]
    suffix: IntArray
    ref_style: IntArray
    refund: npt.NDArray[np.bool_]
    fee: IntArray
    lag: IntArray
    payout: IntArray  # payout index, -1 if settled on its own
    twin_a: IntArray
    twin_b: IntArray
    twin_two_lines: npt.NDArray[np.bool_]

    @property
    def day(self) -> IntArray:
        return self.created_s // 86_400

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        n: int,
        *,
        days: int,
        n_currencies: int,
        p: npt.NDArray[np.float64],
        rates: Mapping[str, float],
    ) -> _Charges:
        created_s = np.sort(rng.integers(0, days * 86_400, size=n)).astype(np.int64)
        picked = _pick(
            rng,
            n,
            rates,
            [
                "payout_member",
                "twin",
                "source_orphan",
                "currency_mismatch",
                "amount_mismatch",
                "date_mismatch",
            ],
        )
        category = np.array([_PAYOUT, _TWIN, _SRC_ORPHAN, _CUR_MISMATCH, _AMT_MISMATCH, _LATE, _NORMAL])[
            picked
        ]
        twin_idx = np.flatnonzero(category == _TWIN)
        if len(twin_idx) % 2:
            category[twin_idx[-1]] = _NORMAL
            twin_idx = twin_idx[:-1]
        twin_a, twin_b = twin_idx[0::2], twin_idx[1::2]

        currency = rng.choice(n_currencies, size=n, p=p).astype(np.int64)
        amount = _amounts(rng, n)
        first_name = rng.integers(0, len(_FIRST_NAMES), size=n)
        last_name = rng.integers(0, len(_LAST_NAMES), size=n)
        company = rng.random(n) < 0.25
        suffix = rng.integers(0, len(_COMPANY_SUFFIXES), size=n)
        style = _pick(rng, n, rates, ["reference_noise", "reference_in_memo", "reference_missing"])
        ref_style = np.array([_REF_NOISY, _REF_MEMO, _REF_NONE, _REF_FIELD])[style]
        normal = category == _NORMAL
        ref_style[~normal] = _REF_FIELD
        refund = normal & (rng.random(n) < rates["refund"])
        amount[refund] = -amount[refund]
        fee_drawn = rng.integers(1, 51, size=n)
        fee = np.where(normal & ~refund & (amount > 500) & (rng.random(n) < rates["fee"]), fee_drawn, 0)
        lag = rng.choice(len(LAG_PROBABILITIES), size=n, p=LAG_PROBABILITIES).astype(np.int64)
        late = category == _LATE
        lag[late] = rng.integers(12, 21, size=int(late.sum()))

        # The second twin is the first again (customer, amount, currency, settlement), created a
        # few minutes later the same day.
        for values in (currency, amount, first_name, last_name, company, suffix, lag):
            values[twin_b] = values[twin_a]
        end_of_day = (created_s[twin_a] // 86_400 + 1) * 86_400 - 1
        created_s[twin_b] = np.minimum(
            created_s[twin_a] + rng.integers(60, 1800, size=len(twin_a)), end_of_day
        )
        amount[twin_idx] = np.abs(amount[twin_idx])
        refund[twin_idx] = False
        fee[twin_idx] = 0

        # Payouts: consecutive charges of one currency, 2-25 per payout.
        payout = np.full(n, -1, dtype=np.int64)
        n_payouts = 0
        for code in range(n_currencies):
            members = np.flatnonzero((category == _PAYOUT) & (currency == code))
            if len(members):
                sizes = rng.integers(2, 26, size=len(members) // 2 + 1)
                payout[members] = n_payouts + np.repeat(np.arange(len(sizes)), sizes)[: len(members)]
                n_payouts = int(payout[members].max()) + 1
        return cls(
            category=category,
            created_s=created_s,
            amount=amount,
            currency=currency,
            first_name=first_name,
            last_name=last_name,
            company=company,
            suffix=suffix,
            ref_style=ref_style,
            refund=refund,
            fee=fee,
            lag=lag,
            payout=payout,
            twin_a=twin_a,
            twin_b=twin_b,
            twin_two_lines=rng.random(len(twin_a)) < 0.5,
        )


def _customers(charges: _Charges) -> pl.Series:
    """A person ("Jane Smith") or a company ("Smith Ltd") per charge."""
    first = pl.Series(_FIRST_NAMES).gather(charges.first_name)
    last = pl.Series(_LAST_NAMES).gather(charges.last_name)
    suffix = pl.Series(_COMPANY_SUFFIXES).gather(charges.suffix)
    frame = pl.DataFrame({"first": first, "last": last, "suffix": suffix, "company": charges.company})
    return frame.select(
        pl.when(pl.col("company"))
        .then(pl.concat_str([pl.col("last"), pl.lit(" "), pl.col("suffix")]))
        .otherwise(pl.concat_str([pl.col("first"), pl.lit(" "), pl.col("last")]))
    ).to_series()


def _source_rows(
    rng: np.random.Generator,
    charges: _Charges,
    currencies: list[str],
    payout_ids: pl.Series,
    start_day: int,
    n_dup: int,
) -> tuple[pl.DataFrame, IntArray]:
    """The processor export (raw rows with ``line`` and ``uid``) and each charge's first line."""
    n = len(charges.amount)
    invoice = pl.Series(np.arange(1, n + 1, dtype=np.int64)).cast(pl.String).str.zfill(6)
    invoice_ref = ("INV-" + invoice).scatter(np.concatenate([charges.twin_a, charges.twin_b]), None)
    refunds = np.flatnonzero(charges.refund)
    record_id = _random_ids(rng, n, "ch_3", 23).scatter(refunds, _random_ids(rng, len(refunds), "re_3", 23))
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
            "customer_name": _customers(charges),
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
        amount=_decimal_text(by_time["amount_minor"], thousands=False),
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
    return rows, first_line


def _bank_lines(
    rng: np.random.Generator,
    charges: _Charges,
    currencies: list[str],
    weights: npt.NDArray[np.float64],
    payout_ids: pl.Series,
    first_line: IntArray,
    *,
    days: int,
    rates: Mapping[str, float],
) -> pl.DataFrame:
    """The bank statement as (line, day, amount, currency, reference, description, kind,
    source_lines) in file order; ``source_lines`` is null for bank-only lines."""
    n = len(charges.amount)
    category, amount, day, lag = charges.category, charges.amount, charges.day, charges.lag
    customer = _customers(charges)

    # Ordinary settlements and the three mismatch cases: one bank line per charge.
    single = np.flatnonzero(np.isin(category, [_NORMAL, _CUR_MISMATCH, _AMT_MISMATCH, _LATE]))
    bank_amount = amount - charges.fee
    short = category == _AMT_MISMATCH
    bank_amount[short] = np.floor(amount[short] * rng.uniform(0.3, 0.7, size=int(short.sum()))).astype(
        np.int64
    )
    converted = category == _CUR_MISMATCH
    rate = rng.uniform(0.75, 1.35, size=int(converted.sum()))
    bank_amount[converted] = np.rint(amount[converted] * rate).astype(np.int64)
    all_currencies = list(dict.fromkeys([*currencies, *SUPPORTED_CURRENCIES]))
    bank_currency = charges.currency.copy()
    shift = rng.integers(1, len(all_currencies), size=n)
    bank_currency[converted] = (bank_currency[converted] + shift[converted]) % len(all_currencies)
    kinds = np.array(["one_to_one", "", "", "", "currency_mismatch", "amount_mismatch", "date_mismatch"])
    # Reference and memo texts come from templates (one concatenation each, no per-row branching):
    # reference = prefix + invoice + suffix; memo = head + [NAME] + middle + [invoice] + tail + [NAME].
    style = charges.ref_style[single]
    noise = rng.integers(0, len(_NOISY_REFERENCES), size=len(single))
    reference_template = np.where(style == _REF_NOISY, 1 + noise, np.where(style == _REF_FIELD, 0, -1))
    memo_variant = rng.integers(0, 3, size=len(single))
    memo_template = np.select(
        [style == _REF_MEMO, style == _REF_NONE, bank_amount[single] < 0],
        [memo_variant, 3, 4],
        5,
    )
    references = [("INV-", ""), *_NOISY_REFERENCES]
    kinds = np.array(["one_to_one", "", "", "", "currency_mismatch", "amount_mismatch", "date_mismatch"])
    single_frame = pl.DataFrame(
        {
            "source_line": first_line[single],
            "day": day[single] + lag[single],
            "amount": bank_amount[single],
            "currency": pl.Series(all_currencies).gather(bank_currency[single]),
            "invoice": pl.Series(np.arange(1, n + 1, dtype=np.int64))
            .gather(single)
            .cast(pl.String)
            .str.zfill(6),
            "name": customer.gather(single).str.to_uppercase(),
            "has_reference": reference_template >= 0,
            "r_prefix": pl.Series([r[0] for r in references]).gather(np.maximum(reference_template, 0)),
            "r_suffix": pl.Series([r[1] for r in references]).gather(np.maximum(reference_template, 0)),
            **{
                f"m_{i}": pl.Series([m[i] for m in _MEMO_TEMPLATES]).gather(memo_template)
                for i in range(len(_MEMO_TEMPLATES[0]))
            },
            "kind": pl.Series(kinds[category[single]]),
        }
    )
    name = pl.col("name")
    single_lines = single_frame.select(
        source_lines=pl.concat_list("source_line"),
        day="day",
        amount="amount",
        currency="currency",
        kind="kind",
        reference=pl.when(pl.col("has_reference")).then(
            pl.concat_str([pl.col("r_prefix"), pl.col("invoice"), pl.col("r_suffix")])
        ),
        description=pl.concat_str(
            [
                pl.col("m_0"),
                pl.when(pl.col("m_1")).then(name).otherwise(pl.lit("")),
                pl.col("m_2"),
                pl.when(pl.col("m_3")).then(pl.col("invoice")).otherwise(pl.lit("")),
                pl.col("m_4"),
                pl.when(pl.col("m_5")).then(name).otherwise(pl.lit("")),
            ]
        ),
    )

    # Twins: one bank line for the pair (linked to the first), or two identical lines.
    twin_a, twin_b = charges.twin_a, charges.twin_b
    twin_rows = np.concatenate([twin_a, twin_a[charges.twin_two_lines]])
    twin_links = np.concatenate([twin_a, twin_b[charges.twin_two_lines]])
    twin_lines = pl.DataFrame(
        {
            "source_line": first_line[twin_links],
            "day": day[twin_rows] + lag[twin_rows],
            "amount": amount[twin_rows],
            "currency": pl.Series(currencies).gather(charges.currency[twin_rows]),
            "customer": customer.gather(twin_rows),
        }
    ).select(
        source_lines=pl.concat_list("source_line"),
        day="day",
        amount="amount",
        currency="currency",
        kind=pl.lit("twin"),
        reference=pl.lit(None, dtype=pl.String),
        description=pl.concat_str([pl.lit("CARD SETTLEMENT "), pl.col("customer").str.to_uppercase()]),
    )

    # Payouts: one credit line per payout, 1-2 days after its last charge.
    members = np.flatnonzero(charges.payout >= 0)
    n_payouts = int(charges.payout.max(initial=-1)) + 1
    payout_lines = (
        pl.DataFrame(
            {
                "payout": charges.payout[members],
                "source_line": first_line[members],
                "day": day[members],
                "amount": amount[members],
                "currency": pl.Series(currencies).gather(charges.currency[members]),
            }
        )
        .group_by("payout")
        .agg(
            source_lines=pl.col("source_line").sort(),
            day=pl.col("day").max(),
            amount=pl.col("amount").sum(),
            currency=pl.col("currency").first(),
        )
        .sort("payout")
    )
    # The payout id in the Reference (60 %), only in the memo (30 %), or nowhere (10 %).
    style = rng.choice(3, size=n_payouts, p=[0.6, 0.3, 0.1])
    payout_lag = rng.integers(1, 3, size=n_payouts)
    index = payout_lines["payout"].to_numpy()
    payout_id = pl.col("payout_id")
    payout_lines = payout_lines.with_columns(
        payout_id=payout_ids.gather(index) if n_payouts else pl.lit(None, dtype=pl.String),
        style=pl.Series(style[index], dtype=pl.Int64),
        day=pl.col("day") + pl.Series(payout_lag[index], dtype=pl.Int64),
    ).select(
        "source_lines",
        "day",
        "amount",
        "currency",
        kind=pl.lit("payout"),
        reference=pl.when(pl.col("style") == 0).then(payout_id).otherwise(pl.lit(None, dtype=pl.String)),
        description=pl.when(pl.col("style") == 0)
        .then(pl.lit("STRIPE PAYOUT"))
        .when(pl.col("style") == 1)
        .then(pl.concat_str([pl.lit("STRIPE PAYOUT "), payout_id]))
        .otherwise(pl.lit("STRIPE TRANSFER")),
    )

    # Bank-only lines: account fees (debits), interest, transfers from savings.
    n_orphans = round(rates["target_orphan"] * n)
    orphan_kind = rng.integers(0, 3, size=n_orphans)
    orphan_amount = np.select(
        [orphan_kind == 0, orphan_kind == 1],
        [-rng.integers(500, 5001, size=n_orphans), rng.integers(1, 2001, size=n_orphans)],
        rng.integers(100_000, 5_000_001, size=n_orphans),
    ).astype(np.int64)
    orphan_lines = pl.DataFrame(
        {
            "day": rng.integers(0, days, size=n_orphans).astype(np.int64),
            "amount": orphan_amount,
            "currency": pl.Series(currencies).gather(rng.choice(len(currencies), size=n_orphans, p=weights)),
            "description": pl.Series(
                ["MONTHLY ACCOUNT FEE", "CREDIT INTEREST", "TRANSFER FROM SAVINGS"]
            ).gather(orphan_kind),
        }
    ).select(
        source_lines=pl.lit(None, dtype=pl.List(pl.Int64)),
        day="day",
        amount="amount",
        currency="currency",
        kind=pl.lit(None, dtype=pl.String),
        reference=pl.lit(None, dtype=pl.String),
        description="description",
    )

    bank = pl.concat(
        [part.cast(_BANK_SCHEMA) for part in (single_lines, twin_lines, payout_lines, orphan_lines)]  # type: ignore[arg-type]
    )
    return (
        bank.with_columns(_tie=pl.Series(rng.random(bank.height)))
        .sort("day", "_tie")
        .drop("_tie")
        .with_row_index("line", offset=1)
        .with_columns(pl.col("line").cast(pl.Int64))
    )


_BANK_SCHEMA: dict[str, pl.DataType] = {
    "source_lines": pl.List(pl.Int64()),
    "day": pl.Int64(),
    "amount": pl.Int64(),
    "currency": pl.String(),
    "kind": pl.String(),
    "reference": pl.String(),
    "description": pl.String(),
}


def _canonical_source(rows: pl.DataFrame) -> pl.DataFrame:
    """The source rows as an adapter reads them (typed values taken from the generator, which are
    exactly what the raw strings say; the raw row is kept as JSON)."""
    return rows.select(
        record_id=pl.col("id"),
        amount_minor=pl.col("amount_minor"),
        currency=pl.col("currency").str.to_uppercase(),
        occurred_at=pl.from_epoch(pl.col("created_us"), time_unit="us").dt.replace_time_zone("UTC"),
        reference=pl.col("invoice_number"),
        description=pl.col("description"),
        counterparty=pl.col("customer_name"),
        group_key=pl.col("payout"),
        references=pl.lit(None, dtype=pl.List(pl.String)),
        line_number=pl.col("line"),
        in_range=pl.lit(True),
        raw=pl.struct(list(SOURCE_RAW_COLUMNS)).struct.json_encode(),
    ).cast(TRANSACTION_SCHEMA)  # type: ignore[arg-type]


def _canonical_target(raw: pl.DataFrame, bank: pl.DataFrame, start_day: int) -> pl.DataFrame:
    """The bank rows as an adapter reads them: dates at midnight UTC, no counterparty or group key."""
    return raw.select(
        record_id=pl.col("Transaction ID"),
        amount_minor=bank["amount"],
        currency=pl.col("Currency"),
        occurred_at=pl.from_epoch(bank["day"] + start_day, time_unit="d")
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
        reference=pl.col("Reference"),
        description=pl.col("Description"),
        counterparty=pl.lit(None, dtype=pl.String),
        group_key=pl.lit(None, dtype=pl.String),
        references=pl.lit(None, dtype=pl.List(pl.String)),
        line_number=pl.col("line"),
        in_range=pl.lit(True),
        raw=pl.struct(list(TARGET_RAW_COLUMNS)).struct.json_encode(),
    ).cast(TRANSACTION_SCHEMA)  # type: ignore[arg-type]


def write_sample_files(
    sample: SampleData,
    directory: str | os.PathLike[str],
    *,
    fmt: Literal["csv", "parquet", "jsonl"] = "csv",
    include_truth: bool = False,
) -> dict[str, Path]:
    """Write both sides as raw exports ``source.<ext>`` and ``target.<ext>`` in ``directory``
    (created if needed); with ``include_truth`` also ``truth.parquet`` and ``twins.parquet``.
    Returns the paths by name (``source``, ``target``, ...). Files appear atomically.

    Every column is a string, exactly as the exports carry it (empty cells are empty / null):

    ``source`` (Stripe-like balance transactions), columns in this order:
      ``id`` (``ch_3...`` / ``re_3...``), ``created`` (UTC, ``2026-11-01 13:45:00``), ``amount``
      (signed decimal in major units, ``12.34`` / ``-12.34``), ``currency`` (lower case, ``usd``),
      ``description``, ``reporting_category`` (``charge`` | ``refund``), ``customer_name``,
      ``invoice_number`` (``INV-000123``; empty for card payments without invoice), ``payout``
      (``po_1...``; empty unless settled in a batch payout).

    ``target`` (bank statement), columns in this order:
      ``Date`` (``dd/mm/yyyy``), ``Transaction ID`` (``BT...``), ``Description`` (the memo),
      ``Reference`` (free text, often empty), ``Amount`` (signed, thousands separators,
      ``1,234.56`` / ``-45.00``; credits positive), ``Currency`` (upper case).

    Canonical mapping (what :func:`generate_sample` returns): source ``id`` -> record_id, ``amount``
    x 100 -> amount_minor, ``currency`` upper-cased, ``created`` -> occurred_at (UTC),
    ``invoice_number`` -> reference, ``customer_name`` -> counterparty, ``payout`` -> group_key;
    target ``Transaction ID`` -> record_id, ``Date`` -> occurred_at (midnight UTC), ``Description``
    -> description, ``Reference`` -> reference, no counterparty or group key.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    frames = {"source": sample.source_raw, "target": sample.target_raw}
    paths: dict[str, Path] = {}
    for name, frame in frames.items():
        paths[name] = _write_atomic(frame, folder / f"{name}.{fmt}", fmt)
    if include_truth:
        paths["truth"] = _write_atomic(sample.truth, folder / "truth.parquet", "parquet")
        paths["twins"] = _write_atomic(sample.twins, folder / "twins.parquet", "parquet")
    return paths


def _write_atomic(frame: pl.DataFrame, path: Path, fmt: str) -> Path:
    staging = path.with_name(f".{path.name}.tmp")
    if fmt == "csv":
        frame.write_csv(staging)
    elif fmt == "parquet":
        frame.write_parquet(staging)
    elif fmt == "jsonl":
        frame.write_ndjson(staging)
    else:
        raise ValidationError(f"unknown sample file format {fmt!r}", hint="use csv, parquet or jsonl")
    os.replace(staging, path)
    return path
