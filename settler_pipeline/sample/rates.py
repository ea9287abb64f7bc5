"""How often each designed phenomenon occurs in generated data, and the fixed facts it draws on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

HARD_CASE_RATES: Final[Mapping[str, float]] = {
    "duplicate": 0.005,
    "payout_member": 0.10,
    "twin": 0.002,
    "source_orphan": 0.005,
    "target_orphan": 0.005,
    "currency_mismatch": 0.002,
    "amount_mismatch": 0.001,
    "date_mismatch": 0.001,
    "split_payment": 0.01,
    "partial_payment": 0.002,
    "decoy": 0.003,
    "reference_noise": 0.15,
    "reference_in_memo": 0.12,
    "reference_in_punctuated_memo": 0.10,
    "reference_is_charge_id": 0.05,
    "reference_missing": 0.08,
    "placeholder_reference": 0.5,
    "common_amount": 0.12,
    "fee": 0.05,
    "refund": 0.03,
}
"""Rates of the hard cases (see :mod:`settler_pipeline.sample` for what each one is a fraction of)."""

LAG_PROBABILITIES: Final = (0.40, 0.35, 0.15, 0.10)
"""Probability of a settlement lag of 0, 1, 2, 3 days."""

DEFAULT_CURRENCY_MIX: Final[Mapping[str, float]] = {"USD": 0.6, "EUR": 0.25, "GBP": 0.15}

# Currencies with two decimal places (the raw exports write amounts as "12.34").
SUPPORTED_CURRENCIES: Final = ("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK")

BANK_ACCOUNTS: Final[Mapping[str, tuple[str, str]]] = {
    "EUR": ("DE89370400440532013000", "Europe/Berlin"),
    "USD": ("US-CHK-000123456", "America/New_York"),
    "GBP": ("GB29NWBK60161331926819", "Europe/London"),
}
"""The bank account (and the zone its booking times are written in) per currency; any other
currency is booked on :data:`OTHER_ACCOUNT`."""

OTHER_ACCOUNT: Final = ("CH9300762011623852957", "Europe/Zurich")

PLACEHOLDER_REFERENCES: Final = ("NOTPROVIDED", "NONREF", "N/A", "-")
"""What the bank writes in the Reference column when no reference was given (half the time)."""


def account_zones() -> dict[str, str]:
    """Every account the generated statement books on, with its time zone."""
    return {account: zone for account, zone in (*BANK_ACCOUNTS.values(), OTHER_ACCOUNT)}
