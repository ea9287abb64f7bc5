"""Configuration of the matcher: an ordered list of passes, each with its rule's parameters.

Tolerances are stated fully. For a candidate pair with source amount ``s`` and target amount ``t``
(integer minor units, same currency) the allowed difference is::

    pct_allowed = floor(abs(base) * percent / 100)      # base = s or t, per ``percent_of``
    allowed = max(absolute_minor, pct_allowed)  if combine == "either"
            = min(absolute_minor, pct_allowed)  if combine == "both"

and the pair is within tolerance when ``abs(t - s) <= allowed``. Dates: the target may occur from
``days_before`` days before to ``days_after`` days after the source (settlement lag), compared in UTC
on calendar days.

Percentages are applied in integer arithmetic: ``percent`` may have at most four decimal places and
is scaled to millionths (``percent * 10_000``), so ``floor(abs(base) * percent / 100)`` is computed
exactly, with no floating point anywhere near money.

Each pass also caps its candidate fan-out (``max_candidates``), which keeps the matcher linear on
data with many repeated amounts or references: a reference or group key found more often than that
on either side identifies nothing and is skipped; a source with more amount + date candidates than
that is not matched by the pass (the evidence cannot single one out) and, if it stays unmatched, is
``ambiguous``; the fuzzy pass scores only the candidates nearest in amount.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PERCENT_SCALE = 10_000
"""``percent`` is scaled by this factor to an integer number of millionths of the amount."""

MAX_TOLERANCE_MINOR = 2 * 10**15
"""Largest ``absolute_minor``: the widest difference two accepted amounts can have (each at most
10^15 minor units, see ``tolerance.MAX_ABS_AMOUNT_MINOR``); a larger one would allow nothing more
and would not fit the matcher's 64-bit integers."""


class Tolerance(BaseModel):
    """How far apart two amounts may be and still match (see the module docstring for the formula)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    absolute_minor: int = Field(default=0, ge=0, le=MAX_TOLERANCE_MINOR)
    percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    percent_of: Literal["source", "target"] = "source"
    combine: Literal["either", "both"] = "either"

    @field_validator("percent")
    @classmethod
    def _percent_has_at_most_four_decimals(cls, value: Decimal) -> Decimal:
        # The matcher works in integer millionths; a finer percentage would be silently rounded.
        if (value * PERCENT_SCALE) != (value * PERCENT_SCALE).to_integral_value():
            raise ValueError(f"percent must have at most 4 decimal places, got {value}")
        return value

    @property
    def percent_millionths(self) -> int:
        """``percent`` as an integer number of millionths (``percent * 10_000``)."""
        return int(self.percent * PERCENT_SCALE)

    @property
    def is_exact(self) -> bool:
        """True when no difference at all is allowed, whatever the amounts."""
        if self.combine == "both":
            return self.absolute_minor == 0 or self.percent == 0
        return self.absolute_minor == 0 and self.percent == 0


class DateWindow(BaseModel):
    """Calendar days the target may lag (``days_after``) or lead (``days_before``) the source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days_before: int = Field(default=0, ge=0, le=366)
    days_after: int = Field(default=3, ge=0, le=366)


def _default_prefixes() -> list[str]:
    return ["INV-", "INV", "REF-", "ORDER-", "PO-"]


class ReferencePass(BaseModel):
    """Exact id/reference match after normalisation (case, whitespace, known prefixes); the source
    reference may also be found inside the target's description (a memo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["reference"] = "reference"
    name: str = "reference"
    strip_prefixes: list[str] = Field(default_factory=_default_prefixes)
    search_in_description: bool = True
    tolerance: Tolerance = Tolerance(absolute_minor=0)
    date_window: DateWindow = DateWindow(days_before=3, days_after=7)
    auto_confirm: bool = True
    # Memo tokens shorter than this (as written) are ignored: short numbers in a memo (amounts,
    # dates) would otherwise "find" short references by accident.
    min_token_length: int = Field(default=4, ge=1, le=64)
    # A normalised reference carried by more records than this on either side is not identifying.
    max_candidates: int = Field(default=50, ge=1, le=10_000)


class AmountDatePass(BaseModel):
    """Same currency, amount within tolerance, date within the window; ties go to review as ambiguous."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["amount_date"] = "amount_date"
    name: str = "amount_date"
    tolerance: Tolerance = Tolerance()
    date_window: DateWindow = DateWindow()
    auto_confirm: bool = True
    max_candidates: int = Field(default=50, ge=1, le=10_000)
    # Two records that both carry a reference, neither contained in the other after normalisation
    # (case, whitespace), name different transactions: never pair them on amount alone.
    reject_conflicting_references: bool = True
    # A record an earlier pass tied to a still-unmatched counterpart by its reference or group key
    # (a near miss: the amount, date or currency was off) stays with that counterpart for review
    # instead of being paired with some other record on amount alone.
    hold_near_misses: bool = True
    # A pair chosen only because its dates were closer than those of an equal-amount competitor
    # is proposed for review rather than auto-confirmed (settlement lags vary by days).
    propose_when_dates_decide: bool = True
    # Days beyond the window searched (any currency) only to explain why a record stayed unmatched
    # (``date_mismatch`` / ``currency_mismatch``); these near misses are never matched. 0 disables.
    mismatch_search_days: int = Field(default=7, ge=0, le=366)


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
    # The single counterpart may carry the group key as a token of its description (a bank memo
    # such as "STRIPE PAYOUT po_1P...") instead of in its reference or group key.
    search_in_description: bool = True
    # Also match a group to a counterpart without the key when the amounts and dates agree.
    match_by_amount: bool = True
    max_candidates: int = Field(default=50, ge=1, le=10_000)


class SplitPass(BaseModel):
    """Split and partial payments through a shared reference: one record settled by several on the
    other side (``one_to_many``: an invoice paid in instalments whose bank lines name it in their
    memo), or several records settled by one (``many_to_one``); ``both`` runs one_to_many first.

    The records of a split share a normalised reference (a reference field, or a memo token on the
    target side) with exactly one counterpart, and no other record of their side shares one with
    it; there are 2..``max_parts`` of them, all in the counterpart's currency and inside the date
    window (instalments may come weeks later). A sum within tolerance is a match; with
    ``propose_partial`` a sum of the same sign below the amount (part paid) is proposed for review,
    its ``amount_difference_minor`` being minus the amount still open; never auto-confirmed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["split"] = "split"
    name: str = "split_payment"
    direction: Literal["one_to_many", "many_to_one", "both"] = "both"
    strip_prefixes: list[str] = Field(default_factory=_default_prefixes)
    search_in_description: bool = True
    min_token_length: int = Field(default=4, ge=1, le=64)
    tolerance: Tolerance = Tolerance()
    date_window: DateWindow = DateWindow(days_before=3, days_after=45)
    max_parts: int = Field(default=5, ge=2, le=50)
    propose_partial: bool = True
    auto_confirm: bool = True


TextField = Literal["reference", "description", "counterparty"]


def _default_fuzzy_fields() -> list[TextField]:
    return ["description", "counterparty"]


class FuzzyPass(BaseModel):
    """Fuzzy text similarity on what is left; it only ever proposes matches for review."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fuzzy"] = "fuzzy"
    name: str = "fuzzy_text"
    fields: list[TextField] = Field(default_factory=_default_fuzzy_fields)
    min_score: float = Field(default=0.85, ge=0.0, le=1.0)
    tolerance: Tolerance = Tolerance(percent=Decimal(5))
    date_window: DateWindow = DateWindow(days_before=3, days_after=7)
    # Candidates per source (same currency, amount and date compatible, nearest amounts first)
    # scored by text similarity.
    max_candidates: int = Field(default=20, ge=1, le=1_000)
    # As in the amount + date pass: records whose references cannot be the same are never proposed.
    reject_conflicting_references: bool = True


MatchPass = Annotated[
    ReferencePass | SplitPass | AmountDatePass | GroupPass | FuzzyPass, Field(discriminator="kind")
]


def default_passes() -> list[MatchPass]:
    """Reference → split payments → amount+date → group sums → fuzzy (proposals only)."""
    return [ReferencePass(), SplitPass(), AmountDatePass(), GroupPass(), FuzzyPass()]


class MatchConfig(BaseModel):
    """The ordered passes the matcher runs; each record is used by at most one match across all passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passes: list[MatchPass] = Field(default_factory=default_passes)

    @model_validator(mode="after")
    def _pass_names_are_unique(self) -> MatchConfig:
        # The pass name is the match's ``rule`` and feeds its id: two passes with one name would
        # make matches indistinguishable.
        names = [p.name for p in self.passes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"pass names must be unique, repeated: {', '.join(repeated)}")
        return self
