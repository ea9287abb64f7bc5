"""The processor's charges: what each one is (its category), its amount, time, customer and how its
settlement shows up on the bank statement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from settler_pipeline.sample.rates import LAG_PROBABILITIES

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Category codes of a charge.
NORMAL, PAYOUT, TWIN, SRC_ORPHAN, CUR_MISMATCH, AMT_MISMATCH, LATE, SPLIT, PARTIAL = range(9)
# How an ordinary settlement shows its reference on the bank line.
REF_FIELD, REF_NOISY, REF_MEMO, REF_NONE, REF_PUNCT, REF_CHARGE_ID = range(6)
REF_STYLE_NAMES = (
    "reference_field",
    "reference_noise",
    "reference_in_memo",
    "reference_missing",
    "reference_in_punctuated_memo",
    "reference_is_charge_id",
)


def pick(rng: np.random.Generator, n: int, rates: Mapping[str, float], names: list[str]) -> IntArray:
    """A category index per item: ``names[i]`` with probability ``rates[names[i]]``, else the last."""
    p = [rates[name] for name in names]
    return np.asarray(rng.choice(len(p) + 1, size=n, p=[*p, 1.0 - sum(p)]), dtype=np.int64)


def draw_amounts(
    rng: np.random.Generator, n: int, common_rate: float, catalogue: IntArray
) -> tuple[IntArray, BoolArray]:
    """Log-normal amounts (median 45.00) with ``common_rate`` of them at catalogue prices."""
    amounts = np.clip(np.rint(rng.lognormal(np.log(4500.0), 1.0, size=n)), 100, 2_000_000).astype(np.int64)
    common = rng.random(n) < common_rate
    amounts[common] = catalogue[rng.integers(0, len(catalogue), size=int(common.sum()))]
    return amounts, common


@dataclass(frozen=True)
class Charges:
    """The processor's charges (before duplicates), one array entry per charge, in creation order
    except that each second twin sits wherever it was drawn (rows are sorted by time later)."""

    category: IntArray
    created_s: IntArray  # seconds since the start of the range
    amount: IntArray
    common: BoolArray  # at a catalogue price
    currency: IntArray  # index into the currency mix
    first_name: IntArray
    last_name: IntArray
    company: BoolArray
    suffix: IntArray
    ref_style: IntArray
    refund: BoolArray
    fee: IntArray
    lag: IntArray
    payout: IntArray  # payout index, -1 if settled on its own
    parts: IntArray  # bank lines of a split (2-3), arrived lines of a partial payment; else 1
    twin_a: IntArray
    twin_b: IntArray
    twin_two_lines: BoolArray

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
        catalogue: IntArray,
    ) -> Charges:
        created_s = np.sort(rng.integers(0, days * 86_400, size=n)).astype(np.int64)
        picked = pick(
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
                "split_payment",
                "partial_payment",
            ],
        )
        category = np.array(
            [PAYOUT, TWIN, SRC_ORPHAN, CUR_MISMATCH, AMT_MISMATCH, LATE, SPLIT, PARTIAL, NORMAL]
        )[picked]
        twin_idx = np.flatnonzero(category == TWIN)
        if len(twin_idx) % 2:
            category[twin_idx[-1]] = NORMAL
            twin_idx = twin_idx[:-1]
        twin_a, twin_b = twin_idx[0::2], twin_idx[1::2]

        currency = rng.choice(n_currencies, size=n, p=p).astype(np.int64)
        amount, common = draw_amounts(rng, n, rates["common_amount"], catalogue)
        # Only invoices of 20.00 and more are paid in instalments: a part of a small invoice could
        # fall within the bank-fee tolerance of the whole.
        category[np.isin(category, [SPLIT, PARTIAL]) & (amount < 2000)] = NORMAL
        first_name = rng.integers(0, 50, size=n)
        last_name = rng.integers(0, 50, size=n)
        company = rng.random(n) < 0.25
        suffix = rng.integers(0, 6, size=n)
        style = pick(
            rng,
            n,
            rates,
            [
                "reference_noise",
                "reference_in_memo",
                "reference_missing",
                "reference_in_punctuated_memo",
                "reference_is_charge_id",
            ],
        )
        ref_style = np.array([REF_NOISY, REF_MEMO, REF_NONE, REF_PUNCT, REF_CHARGE_ID, REF_FIELD])[style]
        normal = category == NORMAL
        ref_style[~normal] = REF_FIELD
        refund = normal & (rng.random(n) < rates["refund"])
        amount[refund] = -amount[refund]
        fee_drawn = rng.integers(1, 51, size=n)
        fee = np.where(normal & ~refund & (amount > 500) & (rng.random(n) < rates["fee"]), fee_drawn, 0)
        lag = rng.choice(len(LAG_PROBABILITIES), size=n, p=LAG_PROBABILITIES).astype(np.int64)
        late = category == LATE
        lag[late] = rng.integers(12, 21, size=int(late.sum()))
        parts = np.ones(n, dtype=np.int64)
        split = category == SPLIT
        parts[split] = rng.integers(2, 4, size=int(split.sum()))
        parts[category == PARTIAL] = 2  # two of three instalments arrived

        # The second twin is the first again (customer, amount, currency, settlement), created a
        # few minutes later the same day.
        for values in (currency, amount, first_name, last_name, company, suffix, lag, common):
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
            members = np.flatnonzero((category == PAYOUT) & (currency == code))
            if len(members):
                sizes = rng.integers(2, 26, size=len(members) // 2 + 1)
                payout[members] = n_payouts + np.repeat(np.arange(len(sizes)), sizes)[: len(members)]
                n_payouts = int(payout[members].max()) + 1
        return cls(
            category=category,
            created_s=created_s,
            amount=amount,
            common=common,
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
            parts=parts,
            twin_a=twin_a,
            twin_b=twin_b,
            twin_two_lines=rng.random(len(twin_a)) < 0.5,
        )
