"""Configuration of the matcher: an ordered list of passes, each with its rule's parameters.

Tolerances are stated fully. For a candidate pair with source amount ``s`` and target amount ``t``
(integer minor units, same currency) the allowed difference is::

    pct_allowed = floor(abs(base) * percent / 100)      # base = s or t, per ``percent_of``
    allowed = max(absolute_minor, pct_allowed)  if combine == "either"
            = min(absolute_minor, pct_allowed)  if combine == "both"

and the pair is within tolerance when ``abs(t - s) <= allowed``. Dates: the target may occur from
``days_before`` days before to ``days_after`` days after the source (settlement lag), compared in UTC
on calendar days.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Tolerance(BaseModel):
    """How far apart two amounts may be and still match (see the module docstring for the formula)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    absolute_minor: int = Field(default=0, ge=0)
    percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    percent_of: Literal["source", "target"] = "source"
    combine: Literal["either", "both"] = "either"


class DateWindow(BaseModel):
    """Calendar days the target may lag (``days_after``) or lead (``days_before``) the source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days_before: int = Field(default=0, ge=0, le=366)
    days_after: int = Field(default=3, ge=0, le=366)


class ReferencePass(BaseModel):
    """Exact id/reference match after normalisation (case, whitespace, known prefixes); the source
    reference may also be found inside the target's description (a memo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["reference"] = "reference"
    name: str = "reference"
    strip_prefixes: list[str] = Field(default_factory=lambda: ["INV-", "INV", "REF-", "ORDER-", "PO-"])
    search_in_description: bool = True
    tolerance: Tolerance = Tolerance(absolute_minor=0)
    date_window: DateWindow = DateWindow(days_before=3, days_after=7)
    auto_confirm: bool = True


class AmountDatePass(BaseModel):
    """Same currency, amount within tolerance, date within the window; ties go to review as ambiguous."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["amount_date"] = "amount_date"
    name: str = "amount_date"
    tolerance: Tolerance = Tolerance()
    date_window: DateWindow = DateWindow()
    auto_confirm: bool = True


class GroupPass(BaseModel):
    """Group sums through the group key: many sources sharing a group key against one target
    (many-to-one, e.g. a bank payout = the sum of its charges), or the reverse (one-to-many)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["group"] = "group"
    name: str = "group_sum"
    direction: Literal["many_to_one", "one_to_many", "both"] = "both"
    tolerance: Tolerance = Tolerance()
    date_window: DateWindow = DateWindow(days_before=0, days_after=5)
    auto_confirm: bool = True


class FuzzyPass(BaseModel):
    """Fuzzy text similarity on what is left; it only ever proposes matches for review."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fuzzy"] = "fuzzy"
    name: str = "fuzzy_text"
    fields: list[Literal["reference", "description", "counterparty"]] = Field(
        default_factory=lambda: ["description", "counterparty"]
    )
    min_score: float = Field(default=0.85, ge=0.0, le=1.0)
    tolerance: Tolerance = Tolerance(percent=Decimal(5))
    date_window: DateWindow = DateWindow(days_before=3, days_after=7)


MatchPass = Annotated[ReferencePass | AmountDatePass | GroupPass | FuzzyPass, Field(discriminator="kind")]


def default_passes() -> list[MatchPass]:
    """Reference → amount+date → group sums → fuzzy (proposals only)."""
    return [ReferencePass(), AmountDatePass(), GroupPass(), FuzzyPass()]


class MatchConfig(BaseModel):
    """The ordered passes the matcher runs; each record is used by at most one match across all passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passes: list[MatchPass] = Field(default_factory=default_passes)
