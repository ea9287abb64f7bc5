"""Names, memo templates, ids and amount text of generated exports."""

from __future__ import annotations

import numpy as np
import polars as pl

from settler_pipeline.sample.charges import Charges
from settler_pipeline.sample.rates import PLACEHOLDER_REFERENCES

_FIRST_NAMES_TEXT = (
    "Olivia Liam Emma Noah Amelia Oliver Ava Elijah Sophia Lucas Isabella Mateo Mia Levi Charlotte "
    "Ethan Harper Leo Evelyn James Aria Henry Luna Jack Ella Theo Nora Arthur Chloe Oscar Ines Hugo "
    "Lea Jonas Clara Finn Emil Ida Felix Mila Samuel Sara Adam Lina Omar Yara Ravi Priya Kenji Aiko"
)
FIRST_NAMES = tuple(_FIRST_NAMES_TEXT.split())
_LAST_NAMES_TEXT = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker "
    "Hall Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts "
    "Muller Schmidt Schneider Fischer Weber Dubois Laurent Rossi Bianchi Tanaka"
)
LAST_NAMES = tuple(_LAST_NAMES_TEXT.split())
COMPANY_SUFFIXES = ("Ltd", "GmbH", "LLC", "Inc", "SARL", "BV")

# Reference-field noise: (prefix, suffix) around the invoice digits.
NOISY_REFERENCES = (("inv-", ""), ("INV ", ""), ("", ""), ("REF-", ""), (" INV-", " "), ("inv", ""))

# Bank memos: (head, with name, middle, with the reference, tail, with name at the end); the
# reference is the invoice digits, or for a charge-id memo the processor's charge id.
MEMO_TEMPLATES = (
    ("Payment ", False, "INV-", True, " thanks", False),  # 0-2: the invoice only in the memo
    ("", True, " INV", True, " FASTER PMT", False),
    ("TRANSFER REF:", False, "INV-", True, " ", True),
    ("TRANSFER FROM ", True, "", False, "", False),  # 3: no reference anywhere
    ("REFUND TO ", True, "", False, "", False),  # 4
    ("PAYMENT FROM ", True, "", False, "", False),  # 5: the reference is in its own column
    ("SVWZ+RE/INV-", False, "", True, "/2026 EREF+NOTPROVIDED", False),  # 6-9: punctuated memos
    ("Rechnungsnr.INV-", False, "", True, " ", True),
    ("", True, ",INV-", True, ",DANKE", False),
    ("RE:INV", False, "", True, ";KD ", True),
    ("CARD ", False, "", True, "/", True),  # 10: the charge id joined to the name
)
MEMO_IN_MEMO, MEMO_NONE, MEMO_REFUND, MEMO_FIELD, MEMO_PUNCT, MEMO_CHARGE_ID = 0, 3, 4, 5, 6, 10

CATALOGUE_PRICES = np.array(
    [499, 999, 1499, 1900, 1999, 2500, 2900, 4900, 7900, 9900, 19900, 99900], dtype=np.int64
)
_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> pl.Series:
    """``prefix`` + ``length`` random base-62 characters (collisions are astronomically unlikely)."""
    chars = _ALPHABET[rng.integers(0, len(_ALPHABET), size=(n, length))]
    body = pl.Series(np.ascontiguousarray(chars).view(f"S{length}").ravel()).cast(pl.String)
    return (prefix + body) if n else pl.Series([], dtype=pl.String)


def customers(charges: Charges) -> pl.Series:
    """A person ("Jane Smith") or a company ("Smith Ltd") per charge."""
    first = pl.Series(FIRST_NAMES).gather(charges.first_name)
    last = pl.Series(LAST_NAMES).gather(charges.last_name)
    suffix = pl.Series(COMPANY_SUFFIXES).gather(charges.suffix)
    frame = pl.DataFrame({"first": first, "last": last, "suffix": suffix, "company": charges.company})
    return frame.select(
        pl.when(pl.col("company"))
        .then(pl.concat_str([pl.col("last"), pl.lit(" "), pl.col("suffix")]))
        .otherwise(pl.concat_str([pl.col("first"), pl.lit(" "), pl.col("last")]))
    ).to_series()


def decimal_text(minor: pl.Series, *, thousands: bool) -> pl.Series:
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


def memo(name: pl.Expr, reference: pl.Expr) -> pl.Expr:
    """The memo text from the template columns ``m_0`` .. ``m_5`` (see :data:`MEMO_TEMPLATES`)."""
    return pl.concat_str(
        [
            pl.col("m_0"),
            pl.when(pl.col("m_1")).then(name).otherwise(pl.lit("")),
            pl.col("m_2"),
            pl.when(pl.col("m_3")).then(reference).otherwise(pl.lit("")),
            pl.col("m_4"),
            pl.when(pl.col("m_5")).then(name).otherwise(pl.lit("")),
        ]
    )


def template_columns(template: np.ndarray) -> dict[str, pl.Series]:
    """The ``m_*`` columns for one template index per row."""
    return {
        f"m_{i}": pl.Series([m[i] for m in MEMO_TEMPLATES]).gather(template)
        for i in range(len(MEMO_TEMPLATES[0]))
    }


def placeholders(rng: np.random.Generator, n: int, rate: float) -> pl.Series:
    """What the Reference column of ``n`` lines without a reference says: a placeholder (at ``rate``)
    or nothing."""
    chosen = pl.Series(PLACEHOLDER_REFERENCES).gather(rng.integers(0, len(PLACEHOLDER_REFERENCES), size=n))
    return chosen.scatter(np.flatnonzero(rng.random(n) >= rate), None)
