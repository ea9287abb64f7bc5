"""The lines of the bank statement that settles generated charges: one line per ordinary settlement,
lines for payouts, twins, split and part payments, decoys and bank-only lines (how they are written
to the statement file is :mod:`settler_pipeline.sample.statement`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from settler_pipeline.sample import text
from settler_pipeline.sample.charges import (
    AMT_MISMATCH,
    CUR_MISMATCH,
    LATE,
    NORMAL,
    PARTIAL,
    REF_CHARGE_ID,
    REF_FIELD,
    REF_MEMO,
    REF_NOISY,
    REF_NONE,
    REF_PUNCT,
    REF_STYLE_NAMES,
    SPLIT,
    Charges,
    IntArray,
)
from settler_pipeline.sample.rates import SUPPORTED_CURRENCIES

INSTALMENT_DAYS: Final = 10
"""Days between the instalments of a split payment."""

_BANK_SCHEMA: dict[str, pl.DataType] = {
    "link": pl.Int64(),  # the true link the line belongs to (null: bank-only line)
    "source_lines": pl.List(pl.Int64()),
    "day": pl.Int64(),
    "amount": pl.Int64(),
    "currency": pl.String(),
    "kind": pl.String(),
    "phenomenon": pl.String(),
    "common": pl.Boolean(),
    "reference": pl.String(),
    "description": pl.String(),
    "decoy": pl.Boolean(),
}


def _lines(
    frame: pl.DataFrame,
    *,
    common: str | pl.Expr,
    reference: str | pl.Expr,
    description: str | pl.Expr,
    kind: str | pl.Expr | None = None,
    phenomenon: str | pl.Expr | None = None,
    decoy: bool = False,
) -> pl.DataFrame:
    """``frame``'s lines as rows of :data:`_BANK_SCHEMA`: its ``day``, ``amount`` and ``currency``;
    ``link`` and the one ``source_line`` (or the ``source_lines``) it settles when it has them, else
    none (a bank-only line, which has no kind or phenomenon either); the rest as given."""
    no_text = pl.lit(None, dtype=pl.String)
    if "link" not in frame.columns:
        link, source_lines = pl.lit(None, dtype=pl.Int64), pl.lit(None, dtype=pl.List(pl.Int64))
    elif "source_lines" in frame.columns:
        link, source_lines = pl.col("link"), pl.col("source_lines")
    else:
        link, source_lines = pl.col("link"), pl.concat_list("source_line")
    return frame.select(
        link=link,
        source_lines=source_lines,
        day="day",
        amount="amount",
        currency="currency",
        kind=no_text if kind is None else kind,
        phenomenon=no_text if phenomenon is None else phenomenon,
        common=common,
        reference=reference,
        description=description,
        decoy=pl.lit(decoy),
    )


class _Statement:
    """Builds the parts of the statement from the charges (one method per kind of line)."""

    def __init__(
        self,
        rng: np.random.Generator,
        charges: Charges,
        currencies: list[str],
        first_line: IntArray,
        charge_ids: pl.Series,
        rates: Mapping[str, float],
    ) -> None:
        self.rng, self.charges, self.currencies, self.rates = rng, charges, currencies, rates
        self.first_line, self.charge_ids = first_line, charge_ids
        self.customer = text.customers(charges)
        self.n = len(charges.amount)
        self.invoice = pl.Series(np.arange(1, self.n + 1, dtype=np.int64)).cast(pl.String).str.zfill(6)

    def placeholder(self, n: int) -> pl.Series:
        return text.placeholders(self.rng, n, self.rates["placeholder_reference"])

    def singles(self) -> pl.DataFrame:
        """Ordinary settlements and the three mismatch cases: one bank line per charge."""
        c, rng, n = self.charges, self.rng, self.n
        single = np.flatnonzero(np.isin(c.category, [NORMAL, CUR_MISMATCH, AMT_MISMATCH, LATE]))
        amount = c.amount - c.fee
        short = c.category == AMT_MISMATCH
        amount[short] = np.floor(c.amount[short] * rng.uniform(0.3, 0.7, size=int(short.sum()))).astype(
            np.int64
        )
        converted = c.category == CUR_MISMATCH
        rate = rng.uniform(0.75, 1.35, size=int(converted.sum()))
        amount[converted] = np.rint(c.amount[converted] * rate).astype(np.int64)
        all_currencies = list(dict.fromkeys([*self.currencies, *SUPPORTED_CURRENCIES]))
        currency = c.currency.copy()
        shift = rng.integers(1, len(all_currencies), size=n)
        currency[converted] = (currency[converted] + shift[converted]) % len(all_currencies)
        # Reference and memo texts come from templates (one concatenation each, no per-row branching).
        style = c.ref_style[single]
        noise = rng.integers(0, len(text.NOISY_REFERENCES), size=len(single))
        reference_template = np.where(style == REF_NOISY, 1 + noise, np.where(style == REF_FIELD, 0, -1))
        memo_template = np.select(
            [
                style == REF_MEMO,
                style == REF_NONE,
                style == REF_PUNCT,
                style == REF_CHARGE_ID,
                amount[single] < 0,
            ],
            [
                text.MEMO_IN_MEMO + rng.integers(0, 3, size=len(single)),
                text.MEMO_NONE,
                text.MEMO_PUNCT + rng.integers(0, 4, size=len(single)),
                text.MEMO_CHARGE_ID,
                text.MEMO_REFUND,
            ],
            text.MEMO_FIELD,
        )
        references = [("INV-", ""), *text.NOISY_REFERENCES]
        kinds = np.array(["one_to_one", "", "", "", "currency_mismatch", "amount_mismatch", "date_mismatch"])
        placeholder = self.placeholder(len(single))
        style_names = pl.Series(REF_STYLE_NAMES).gather(style)
        frame = pl.DataFrame(
            {
                "link": single,
                "source_line": self.first_line[single],
                "day": c.day[single] + c.lag[single],
                "amount": amount[single],
                "currency": pl.Series(all_currencies).gather(currency[single]),
                "invoice": self.invoice.gather(single),
                "charge_id": self.charge_ids.gather(single),
                "name": self.customer.gather(single).str.to_uppercase(),
                "has_reference": reference_template >= 0,
                "by_charge_id": style == REF_CHARGE_ID,
                "r_prefix": pl.Series([r[0] for r in references]).gather(np.maximum(reference_template, 0)),
                "r_suffix": pl.Series([r[1] for r in references]).gather(np.maximum(reference_template, 0)),
                **text.template_columns(memo_template),
                "kind": pl.Series(kinds[c.category[single]]),
                "style": style_names,
                "placeholder": placeholder,
                "common": c.common[single],
            }
        )
        in_memo = pl.when(pl.col("by_charge_id")).then(pl.col("charge_id")).otherwise(pl.col("invoice"))
        return _lines(
            frame,
            kind="kind",
            phenomenon=pl.when(pl.col("kind") != "one_to_one")
            .then(pl.col("kind"))
            .when((pl.col("style") == "reference_missing") & pl.col("placeholder").is_not_null())
            .then(pl.lit("reference_placeholder"))
            .otherwise(pl.col("style")),
            common="common",
            reference=pl.when(pl.col("has_reference"))
            .then(pl.concat_str([pl.col("r_prefix"), pl.col("invoice"), pl.col("r_suffix")]))
            .otherwise(pl.col("placeholder")),
            description=text.memo(pl.col("name"), in_memo),
        )

    def instalments(self) -> pl.DataFrame:
        """Split payments (2-3 instalments summing to the invoice) and part payments (two of three
        instalments arrived), each instalment naming the invoice in its memo."""
        c, rng = self.charges, self.rng
        split = np.flatnonzero(np.isin(c.category, [SPLIT, PARTIAL]))
        planned = np.where(c.category[split] == PARTIAL, 3, c.parts[split])
        weights = rng.uniform(0.2, 1.0, size=(len(split), 3))
        weights[planned == 2, 2] = 0.0
        shares = np.floor(c.amount[split, None] * weights / weights.sum(axis=1, keepdims=True)).astype(
            np.int64
        )
        shares[:, 0] += c.amount[split] - shares.sum(axis=1)  # the first instalment takes the rounding
        part = np.tile(np.arange(3), len(split))
        owner = np.repeat(np.arange(len(split)), 3)
        arrived = part < c.parts[split][owner]
        part, owner = part[arrived], owner[arrived]
        charge = split[owner]
        template = np.where(
            rng.random(len(charge)) < 0.5,
            text.MEMO_IN_MEMO + rng.integers(0, 3, size=len(charge)),
            text.MEMO_PUNCT + rng.integers(0, 4, size=len(charge)),
        )
        partial = c.category[charge] == PARTIAL
        frame = pl.DataFrame(
            {
                "link": charge,
                "source_line": self.first_line[charge],
                "day": c.day[charge] + c.lag[charge] + INSTALMENT_DAYS * part,
                "amount": shares[owner, part],
                "currency": pl.Series(self.currencies).gather(c.currency[charge]),
                "invoice": self.invoice.gather(charge),
                "name": self.customer.gather(charge).str.to_uppercase(),
                **text.template_columns(template),
                "kind": np.where(partial, "partial_payment", "split_payment"),
                "label": pl.Series((part + 1).astype(np.int64)).cast(pl.String)
                + "/"
                + pl.Series(planned[owner]).cast(pl.String),
                "placeholder": self.placeholder(len(charge)),
                "common": c.common[charge],
            }
        )
        return _lines(
            frame,
            kind="kind",
            phenomenon="kind",
            common="common",
            reference="placeholder",
            description=pl.concat_str(
                [text.memo(pl.col("name"), pl.col("invoice")), pl.lit(" TEIL "), "label"]
            ),
        )

    def twins(self) -> pl.DataFrame:
        """One bank line for a pair of twins (linked to the first), or two identical lines."""
        c = self.charges
        twin_rows = np.concatenate([c.twin_a, c.twin_a[c.twin_two_lines]])
        twin_links = np.concatenate([c.twin_a, c.twin_b[c.twin_two_lines]])
        frame = pl.DataFrame(
            {
                "link": twin_links,
                "source_line": self.first_line[twin_links],
                "day": c.day[twin_rows] + c.lag[twin_rows],
                "amount": c.amount[twin_rows],
                "currency": pl.Series(self.currencies).gather(c.currency[twin_rows]),
                "customer": self.customer.gather(twin_rows),
                "placeholder": self.placeholder(len(twin_rows)),
                "common": c.common[twin_rows],
            }
        )
        return _lines(
            frame,
            kind=pl.lit("twin"),
            phenomenon=pl.lit("twin"),
            common="common",
            reference="placeholder",
            description=pl.concat_str([pl.lit("CARD SETTLEMENT "), pl.col("customer").str.to_uppercase()]),
        )

    def payouts(self, payout_ids: pl.Series) -> pl.DataFrame:
        """One credit line per payout, 1-2 days after its last charge; the payout id in the Reference
        (60 %), only in the memo (30 %), or nowhere (10 %)."""
        c, rng = self.charges, self.rng
        members = np.flatnonzero(c.payout >= 0)
        n_payouts = int(c.payout.max(initial=-1)) + 1
        lines = (
            pl.DataFrame(
                {
                    "payout": c.payout[members],
                    "source_line": self.first_line[members],
                    "day": c.day[members],
                    "amount": c.amount[members],
                    "currency": pl.Series(self.currencies).gather(c.currency[members]),
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
        style = rng.choice(3, size=n_payouts, p=[0.6, 0.3, 0.1])
        payout_lag = rng.integers(1, 3, size=n_payouts)
        index = lines["payout"].to_numpy()
        payout_id = pl.col("payout_id")
        lines = lines.with_columns(
            link=pl.col("payout") + self.n,
            payout_id=payout_ids.gather(index) if n_payouts else pl.lit(None, dtype=pl.String),
            style=pl.Series(style[index], dtype=pl.Int64),
            day=pl.col("day") + pl.Series(payout_lag[index], dtype=pl.Int64),
            placeholder=self.placeholder(lines.height),
        )
        return _lines(
            lines,
            kind=pl.lit("payout"),
            phenomenon=pl.lit("payout"),
            common=pl.lit(False),
            reference=pl.when(pl.col("style") == 0).then(payout_id).otherwise(pl.col("placeholder")),
            description=pl.when(pl.col("style") == 0)
            .then(pl.lit("STRIPE PAYOUT"))
            .when(pl.col("style") == 1)
            .then(pl.concat_str([pl.lit("STRIPE PAYOUT "), payout_id]))
            .otherwise(pl.lit("STRIPE TRANSFER")),
        )

    def decoys(self) -> pl.DataFrame:
        """Bank-only lines that look like a charge's settlement (same amount, currency and day) but
        name another invoice, one the processor never issued."""
        c, rng = self.charges, self.rng
        candidates = np.flatnonzero((c.category == NORMAL) & ~c.refund)
        count = min(round(self.rates["decoy"] * self.n), len(candidates))
        chosen = np.sort(rng.choice(candidates, size=count, replace=False)) if count else candidates[:0]
        other = rng.integers(0, max(self.n, 1), size=count)
        frame = pl.DataFrame(
            {
                "day": c.day[chosen] + c.lag[chosen],
                "amount": c.amount[chosen],
                "currency": pl.Series(self.currencies).gather(c.currency[chosen]),
                "invoice": pl.Series(9_000_000 + rng.integers(0, 1_000_000, size=count)).cast(pl.String),
                "name": self.customer.gather(other).str.to_uppercase()
                if count
                else pl.Series([], dtype=pl.String),
                "common": c.common[chosen],
            }
        )
        return _lines(
            frame,
            common="common",
            reference=pl.concat_str([pl.lit("INV-"), pl.col("invoice")]),
            description=pl.concat_str([pl.lit("PAYMENT FROM "), pl.col("name")]),
            decoy=True,
        )

    def bank_only(self, weights: npt.NDArray[np.float64], days: int) -> pl.DataFrame:
        """Account fees (debits), interest, transfers from savings."""
        rng = self.rng
        n_orphans = round(self.rates["target_orphan"] * self.n)
        orphan_kind = rng.integers(0, 3, size=n_orphans)
        orphan_amount = np.select(
            [orphan_kind == 0, orphan_kind == 1],
            [-rng.integers(500, 5001, size=n_orphans), rng.integers(1, 2001, size=n_orphans)],
            rng.integers(100_000, 5_000_001, size=n_orphans),
        ).astype(np.int64)
        frame = pl.DataFrame(
            {
                "day": rng.integers(0, days, size=n_orphans).astype(np.int64),
                "amount": orphan_amount,
                "currency": pl.Series(self.currencies).gather(
                    rng.choice(len(self.currencies), size=n_orphans, p=weights)
                ),
                "description": pl.Series(
                    ["MONTHLY ACCOUNT FEE", "CREDIT INTEREST", "TRANSFER FROM SAVINGS"]
                ).gather(orphan_kind),
                "placeholder": self.placeholder(n_orphans),
            }
        )
        return _lines(frame, common=pl.lit(False), reference="placeholder", description="description")


def bank_lines(
    rng: np.random.Generator,
    charges: Charges,
    currencies: list[str],
    weights: npt.NDArray[np.float64],
    payout_ids: pl.Series,
    first_line: IntArray,
    charge_ids: pl.Series,
    *,
    days: int,
    rates: Mapping[str, float],
) -> pl.DataFrame:
    """The bank statement as rows of :data:`_BANK_SCHEMA` plus ``line``, in file order (by day)."""
    statement = _Statement(rng, charges, currencies, first_line, charge_ids, rates)
    parts = [
        statement.singles(),
        statement.instalments(),
        statement.twins(),
        statement.payouts(payout_ids),
        statement.decoys(),
        statement.bank_only(weights, days),
    ]
    bank = pl.concat([part.cast(_BANK_SCHEMA) for part in parts])  # type: ignore[arg-type]
    return (
        bank.with_columns(_tie=pl.Series(rng.random(bank.height)))
        .sort("day", "_tie")
        .drop("_tie")
        .with_row_index("line", offset=1)
        .with_columns(pl.col("line").cast(pl.Int64))
    )
