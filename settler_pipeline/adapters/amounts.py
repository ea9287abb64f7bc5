"""Amounts and currencies of normalisation: amount text parsed to integer minor units with integer
arithmetic only (never through a float), amounts computed from several columns, and currency codes
with their minor-unit exponents.

The integer and fraction digits are extracted with a regular expression and combined as
``int * 10**exponent + fraction``, where the exponent is the currency's minor-unit exponent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import polars as pl
from pydantic import ValidationError as PydanticValidationError

from settler_pipeline.adapters.reasons import PREFIX, first_reason, quoted, sparse_reason
from settler_pipeline.jobspec import (
    AMOUNT_TERM_SEPARATOR,
    CURRENCY_CODE_PATTERN,
    ISO_4217_CODES,
    AmountExpression,
    AmountOptions,
    CurrencyOptions,
    SideSpec,
)

# ISO 4217 minor-unit exponents that differ from the usual 2.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV"),
        0,
    ),
    **dict.fromkeys(("XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
DEFAULT_EXPONENT = 2
# Currency symbols tolerated in front of an amount ("$12.00", "€ 3.10"). A fixed set, not the
# Unicode class, so that the cheap literal strip removes exactly what the shape check accepted.
CURRENCY_SYMBOLS = "$€£¥₹₩₽₺₪₫฿₦₱₴₡₲₵₸"
# At most 14 integer digits keep int * 10**4 + fraction (< 10**18) inside Int64 (~9.2 * 10**18);
# minor-unit integers may have 18 digits.
MAX_INTEGER_DIGITS = 14


def spec_exponents(spec: Mapping[str, Any], side: str | None = None) -> dict[str, int]:
    """The minor-unit exponents a run used, from the job spec it ran with (the ``spec`` mapping its
    ``ReconciliationStarted`` carries): the built-in table with the ``currency.exponents`` of ``side``
    over it, or of both sides when ``side`` is None (the source's where both name a code). A side whose
    currency options no longer validate declares nothing."""
    exponents = dict(CURRENCY_EXPONENTS)
    for name in ("target", "source") if side is None else (side,):
        section = spec.get(name)
        currency = section.get("currency") if isinstance(section, Mapping) else None
        if not isinstance(currency, Mapping):
            continue
        try:
            exponents.update(CurrencyOptions.model_validate(dict(currency)).exponents)
        except PydanticValidationError:
            continue
    return exponents


def declared_exponents(spec: Mapping[str, Any]) -> dict[str, int]:
    """The exponents of :func:`spec_exponents` (both sides) that differ from what the built-in table
    (or the default of 2) says: empty for almost every run."""
    return {
        code: exponent
        for code, exponent in spec_exponents(spec).items()
        if CURRENCY_EXPONENTS.get(code, DEFAULT_EXPONENT) != exponent
    }


def with_amount_expression(
    frame: pl.DataFrame, text: dict[str, str], spec: SideSpec, expression: AmountExpression
) -> tuple[pl.DataFrame, pl.Expr, str]:
    """Parse each term of ``expression`` as an amount and add them up (a blank term is 0). Returns the
    frame, the amount and the name of one reason column covering every term."""
    values: list[pl.Expr] = []
    blanks: list[pl.Expr] = []
    term_reasons: list[pl.Expr] = []
    for i, term in enumerate(expression.terms):
        field = f"amount ({term.column})"
        frame = with_amount(
            frame, text[f"amount{AMOUNT_TERM_SEPARATOR}{i}"], spec.amount, field, required=False
        )
        values.append(pl.col(f"{PREFIX}value_{field}").fill_null(0) * term.sign)
        blanks.append(pl.col(text[f"amount{AMOUNT_TERM_SEPARATOR}{i}"]).is_null())
        term_reasons.append(pl.col(f"{PREFIX}reason_{field}"))
    missing = pl.when(pl.all_horizontal(blanks)).then(pl.lit(f"amount: missing ({expression} are all empty)"))
    frame = frame.with_columns(
        pl.concat_str([*term_reasons, missing], separator="; ", ignore_nulls=True).alias(
            f"{PREFIX}reason_amount"
        )
    )
    frame = frame.with_columns(
        pl.when(pl.col(f"{PREFIX}reason_amount") != "")
        .then(pl.col(f"{PREFIX}reason_amount"))
        .alias(f"{PREFIX}reason_amount")
    )
    return frame, pl.sum_horizontal(values), f"{PREFIX}reason_amount"


def with_currency(frame: pl.DataFrame, text_col: str | None, spec: SideSpec) -> tuple[pl.DataFrame, str]:
    """Add the currency code, its minor-unit exponent and a reason column; returns the reason name."""
    default = spec.currency.default
    if text_col is not None:
        code = pl.col(text_col).str.to_uppercase()
        if default is not None:
            code = code.fill_null(pl.lit(default))
    else:
        code = pl.lit(default, dtype=pl.String)
    frame = frame.with_columns(code.alias(f"{PREFIX}currency"))
    code = pl.col(f"{PREFIX}currency")
    shown = pl.col(text_col) if text_col is not None else code
    exponents = {**CURRENCY_EXPONENTS, **spec.currency.exponents}
    frame = frame.with_columns(
        code.replace_strict(exponents, default=DEFAULT_EXPONENT, return_dtype=pl.Int64).alias(
            f"{PREFIX}exponent"
        )
    )
    reason = sparse_reason(
        frame,
        [
            (code.is_null(), pl.lit("currency: missing (and no currency.default is set)")),
            (
                ~code.str.contains(CURRENCY_CODE_PATTERN),
                quoted("currency", shown, "is not an ISO 4217 code (three letters such as EUR)"),
            ),
            (
                ~code.is_in(sorted(ISO_4217_CODES | set(spec.currency.exponents))),
                quoted(
                    "currency",
                    code,
                    "is not an ISO 4217 code (a private or withdrawn code is accepted when the job spec "
                    "names it under currency.exponents)",
                ),
            ),
        ],
    )
    return frame.with_columns(reason.alias(f"{PREFIX}reason_currency")), f"{PREFIX}reason_currency"


def _amount_pattern(options: AmountOptions) -> str:
    group = options.grouping
    # [0-9], not \d: the regex engine's \d is Unicode and would pass full-width or Arabic-Indic
    # digits, which the integer cast then reads as nothing (an amount of 0).
    integer = rf"[0-9]{{1,3}}(?:{re.escape(group)}[0-9]{{3}})+|[0-9]+" if group else r"[0-9]+"
    fraction = ""
    if options.format == "decimal":
        fraction = rf"(?:{re.escape(options.decimal_separator)}[0-9]*)?"
    symbol = "[" + "".join(re.escape(c) for c in CURRENCY_SYMBOLS) + "]"
    return rf"^[+-]?(?:{symbol} ?)?(?:{integer})?{fraction}-?$"


def with_amount(
    frame: pl.DataFrame, text_col: str, options: AmountOptions, field: str, *, required: bool
) -> pl.DataFrame:
    """Add ``value_<field>`` (signed Int64 minor units) and ``reason_<field>`` columns parsed from
    the trimmed text in ``text_col``, using the ``exponent`` and ``currency`` columns already added.

    Accepted: an optional sign (leading, or a trailing ``-``), ``(12.00)`` for a negative value, one
    leading currency symbol, thousands grouping in threes with the configured separator, and for
    ``decimal`` at most the currency's number of decimal places (extra trailing zeros are fine;
    anything else is refused rather than rounded). Blank text is a reason only when ``required``.
    """
    value_col, reason_col = f"{PREFIX}value_{field}", f"{PREFIX}reason_{field}"
    shape = _plain_pattern(options)
    if shape is None:
        return with_any_amount(frame, text_col, options, field, required=required)
    plain = frame.select(pl.col(text_col).str.contains(shape).fill_null(False)).to_series()
    rest = (~plain).arg_true()
    if rest.len() == frame.height:
        return with_any_amount(frame, text_col, options, field, required=required)
    value, reason = _plain_amounts(frame, text_col, options, field)
    if rest.len():
        # The few texts of another shape (grouping, a symbol, brackets, a bad value) take the full
        # parse, on their rows only.
        needed = [text_col, f"{PREFIX}exponent", f"{PREFIX}currency", f"{PREFIX}reason_currency"]
        parsed = with_any_amount(frame.select(needed)[rest], text_col, options, field, required=required)
        value = value.scatter(rest, parsed[value_col])
        reason = reason.scatter(rest, parsed[reason_col])
    return frame.with_columns(value.alias(value_col), reason.alias(reason_col))


_PLAIN_DIGITS = 4
"""Decimal places of the plain amounts parsed exactly through a decimal cast: every exponent (0..4)."""


def _plain_pattern(options: AmountOptions) -> str | None:
    """The plain amounts (an optional sign and ASCII digits, for ``decimal`` with up to four places
    after a point) that :func:`_plain_amounts` reads as the full parse would."""
    if options.format != "decimal":
        return rf"^[+-]?[0-9]{{1,{MAX_INTEGER_DIGITS + 4}}}$"
    if options.decimal_separator != ".":
        return None  # the decimal cast reads only a point
    return rf"^[+-]?[0-9]{{1,{MAX_INTEGER_DIGITS}}}(?:\.[0-9]{{1,{_PLAIN_DIGITS}}})?$"


def _plain_amounts(
    frame: pl.DataFrame, text_col: str, options: AmountOptions, field: str
) -> tuple[pl.Series, pl.Series]:
    """The value and reason of every row as :func:`with_any_amount` gives them for plain amounts
    (see :func:`_plain_pattern`; other rows' are meaningless). At most four places and fourteen
    integer digits fit a decimal of scale four exactly, so its integer form is the amount in
    ten-thousandths: the value is that divided by ``10**(4 - exponent)``, and a remainder is a place
    the currency does not have."""
    text = pl.col(text_col)
    exponent = pl.col(f"{PREFIX}exponent")
    if options.format != "decimal":
        return frame.select(text.cast(pl.Int64, strict=False)).to_series(), _no_reasons(frame.height)
    scaled = text.cast(pl.Decimal(MAX_INTEGER_DIGITS + _PLAIN_DIGITS, _PLAIN_DIGITS), strict=False)
    # Two steps: an eager select works out a sub-expression once per use, and the cast is the cost.
    parts = frame.select(
        magnitude=scaled.to_physical().cast(pl.Int64).abs(),
        negative=text.str.starts_with("-"),
        unit=pl.lit(10, dtype=pl.Int64).pow(_PLAIN_DIGITS - exponent),
        priced=pl.col(f"{PREFIX}reason_currency").is_null(),
    )
    magnitude, unit = pl.col("magnitude"), pl.col("unit")
    parts = parts.select(
        value=pl.when(pl.col("negative")).then(-(magnitude // unit)).otherwise(magnitude // unit),
        excess=((magnitude % unit) != 0) & pl.col("priced"),
    )
    value, excess = parts["value"], parts["excess"]
    reason = _no_reasons(frame.height)
    wrong = excess.fill_null(False).arg_true()
    if wrong.len():
        places = pl.col(text_col).str.split_exact(".", 1).struct.field("field_1").fill_null("")
        message = frame[wrong].select(_too_many_places(field, text, places, exponent))
        reason = reason.scatter(wrong, message.to_series())
    return value, reason


def _too_many_places(field: str, text: pl.Expr, places: pl.Expr, exponent: pl.Expr) -> pl.Expr:
    """The quarantine reason of an amount ``text`` whose decimal ``places`` exceed its currency's
    ``exponent`` (one wording for the plain and the full parse)."""
    return pl.concat_str(
        pl.lit(f"{field}: '"),
        text,
        pl.lit("' has "),
        places.str.len_bytes().cast(pl.String),
        pl.lit(" decimal places but "),
        pl.col(f"{PREFIX}currency"),
        pl.lit(" allows "),
        exponent.cast(pl.String),
    )


def _no_reasons(height: int) -> pl.Series:
    return pl.repeat(None, height, dtype=pl.String, eager=True)


def with_any_amount(
    frame: pl.DataFrame, text_col: str, options: AmountOptions, field: str, *, required: bool
) -> pl.DataFrame:
    """:func:`with_amount` for text of any shape: each value parsed by string operations (slower than
    the decimal cast :func:`with_amount` reads plain amounts with, and what it is checked against)."""
    p = f"{PREFIX}{field}_"
    text = pl.col(text_col)
    exponent = pl.col(f"{PREFIX}exponent")
    decimal = options.format == "decimal"

    # Literal string operations only, apart from one regex that validates the shape: a
    # capturing regex (extract_groups) costs ten times more on a million rows.
    opens, closes = text.str.starts_with("("), text.str.ends_with(")")
    frame = frame.with_columns(
        (opens & closes).alias(f"{p}paren"),
        (opens != closes).alias(f"{p}unbalanced"),
        text.str.strip_prefix("(").str.strip_suffix(")").alias(f"{p}body"),
    )
    body, paren = pl.col(f"{p}body"), pl.col(f"{p}paren")
    lead_minus, lead_plus, trail_minus = (
        body.str.starts_with("-"),
        body.str.starts_with("+"),
        body.str.ends_with("-") & (body.str.len_bytes() > 1),
    )
    core = body.str.strip_chars_start("+-" + CURRENCY_SYMBOLS + " ").str.strip_chars_end("-")
    if options.grouping:
        core = core.str.replace_all(options.grouping, "", literal=True)
    frame = frame.with_columns(
        body.str.contains(_amount_pattern(options)).fill_null(False).alias(f"{p}shape"),
        lead_minus.alias(f"{p}lead_minus"),
        (lead_minus | lead_plus).alias(f"{p}lead"),
        trail_minus.alias(f"{p}trail"),
        core.alias(f"{p}core"),
    )
    core = pl.col(f"{p}core")
    if decimal:
        parts = core.str.split_exact(options.decimal_separator, 1)
        frame = frame.with_columns(
            parts.struct.field("field_0").alias(f"{p}int"),
            parts.struct.field("field_1").fill_null("").alias(f"{p}frac"),
        )
    else:
        frame = frame.with_columns(core.alias(f"{p}int"), pl.lit("", dtype=pl.String).alias(f"{p}frac"))
    integer, fraction = pl.col(f"{p}int"), pl.col(f"{p}frac")
    lead, lead_minus, trail = pl.col(f"{p}lead"), pl.col(f"{p}lead_minus"), pl.col(f"{p}trail")

    markers = paren.cast(pl.Int8) + lead_minus.cast(pl.Int8) + trail.cast(pl.Int8)
    syntax_ok = (
        pl.col(f"{p}shape")
        & ~pl.col(f"{p}unbalanced")
        & ((integer.str.len_bytes() > 0) | (fraction.str.len_bytes() > 0))
        & (markers <= 1)
        & ~(lead & trail)
    )
    max_digits = MAX_INTEGER_DIGITS if decimal else MAX_INTEGER_DIGITS + 4
    too_large = (integer.str.len_bytes() > max_digits).fill_null(False)
    int_value = integer.cast(pl.Int64, strict=False).fill_null(0)
    if decimal:
        # Exponents are 0..4: pad the fraction to 4 digits and scale down, exactly (no rounding:
        # digits beyond the exponent must be zeros, which `excess` checks).
        head = fraction.str.slice(0, 4)
        ten = pl.lit(10, dtype=pl.Int64)
        # len_chars, not len_bytes: a fraction of non-ASCII digits (refused by the shape check, but
        # still evaluated here) must not make the power negative
        four = head.cast(pl.Int64, strict=False).fill_null(0) * ten.pow(
            4 - head.str.len_chars().cast(pl.Int64)
        )
        magnitude = int_value * ten.pow(exponent) + four // ten.pow(4 - exponent)
        excess = fraction.str.strip_chars_end("0").str.len_bytes() > exponent
    else:
        magnitude = int_value
        excess = pl.lit(False)
    frame = frame.with_columns(
        syntax_ok.alias(f"{p}ok"),
        too_large.alias(f"{p}large"),
        excess.fill_null(False).alias(f"{p}excess"),
        magnitude.alias(f"{p}magnitude"),
    )
    magnitude = pl.col(f"{p}magnitude")
    negative = paren | lead_minus | trail
    frame = frame.with_columns(pl.when(negative).then(-magnitude).otherwise(magnitude).alias(f"{p}signed"))

    ok, large, excess = pl.col(f"{p}ok"), pl.col(f"{p}large"), pl.col(f"{p}excess")
    what = "a decimal number" if decimal else "an integer number of minor units"
    separators = (
        f" (decimal separator {options.decimal_separator!r}, thousands separator {options.grouping!r})"
        if decimal
        else f" (thousands separator {options.grouping!r})"
    )
    currency_ok = pl.col(f"{PREFIX}reason_currency").is_null()
    missing = pl.lit(f"{field}: missing") if required else pl.lit(None, dtype=pl.String)
    reason = first_reason(
        [
            (text.is_null(), missing),
            (
                ~ok,
                pl.concat_str(pl.lit(f"{field}: cannot parse '"), text, pl.lit(f"' as {what}{separators}")),
            ),
            (large, quoted(field, text, "is too large")),
            (excess & currency_ok, _too_many_places(field, text, fraction, exponent)),
        ]
    )
    value = pl.when(text.is_not_null() & ok & ~large).then(pl.col(f"{p}signed"))
    return frame.with_columns(value.alias(f"{PREFIX}value_{field}"), reason.alias(f"{PREFIX}reason_{field}"))
