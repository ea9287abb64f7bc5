"""How the sample job reads and matches generated data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from settler_pipeline.domain.matching.config import (
    AmountDatePass,
    DateWindow,
    FuzzyPass,
    GroupPass,
    MatchConfig,
    ReferencePass,
    SplitPass,
    Tolerance,
)
from settler_pipeline.sample.rates import account_zones
from settler_pipeline.sample.statement import DATE_FORMAT


def sample_match_config() -> MatchConfig:
    """The matcher configuration the generated data is designed for: references tolerate bank fees
    up to 50 cents and settle 0-7 days later; instalments of a split invoice come within 30 days;
    payout groups run before amount + date so a payout's charges are not paired one by one with
    stray bank lines; fuzzy text only proposes."""
    return MatchConfig(
        passes=[
            ReferencePass(
                tolerance=Tolerance(absolute_minor=50), date_window=DateWindow(days_before=0, days_after=7)
            ),
            SplitPass(date_window=DateWindow(days_before=0, days_after=30)),
            GroupPass(direction="many_to_one", date_window=DateWindow(days_before=0, days_after=5)),
            AmountDatePass(tolerance=Tolerance(), date_window=DateWindow(days_before=0, days_after=3)),
            FuzzyPass(
                tolerance=Tolerance(percent=Decimal(2)), date_window=DateWindow(days_before=0, days_after=5)
            ),
        ]
    )


def sample_sides(source: str, target: str, adapter: str) -> dict[str, dict[str, Any]]:
    """The ``source`` and ``target`` sections of the sample job spec: the presets, the charge id as a
    further reference, and the statement's booking times in each account's zone."""
    return {
        "source": {
            "adapter": adapter,
            "path": source,
            "preset": "stripe_balance_transactions",
            "columns": {"any_reference": ["id"]},
        },
        "target": {
            "adapter": adapter,
            "path": target,
            "preset": "bank_statement_csv",
            "dates": {"format": DATE_FORMAT, "timezone_column": "Account", "timezones": account_zones()},
        },
    }
