"""Normalisation: from a table of string columns to the canonical transaction schema.

Everything here is Polars expressions over whole columns, applied in stages: each stage materialises
intermediate columns that the next one reads, because eager Polars would otherwise re-evaluate a
shared sub-expression (a regex extraction, a date parse) once per use. Each canonical field yields a
value column and a per-row *reason* column (null when the value is fine); the reasons are joined into
one column that splits the rows into valid records and quarantined rows, so a bad row is reported,
never dropped.

Amounts are parsed from their text with integer arithmetic only (never through a float): the integer
and fraction digits are extracted with a regular expression and combined as
``int * 10**exponent + fraction``, where the exponent is the currency's minor-unit exponent.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from settler_pipeline.domain.matching.normalise import pattern_references, without_placeholders
from settler_pipeline.domain.matching.tolerance import MAX_ABS_AMOUNT_MINOR
from settler_pipeline.domain.transactions import QUARANTINE_SCHEMA, TRANSACTION_SCHEMA
from settler_pipeline.errors import JobSpecError
from settler_pipeline.jobspec import (
    AMOUNT_TERM_SEPARATOR,
    CURRENCY_CODE_PATTERN,
    AmountExpression,
    AmountOptions,
    DateOptions,
    SideSpec,
)

LINE_COL = "__settler_line_number__"
RAW_COL = "__settler_raw__"
_P = "__settler_"  # prefix of intermediate columns

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
# Longest text kept per field; a longer value quarantines its row (a megabyte "reference" is a broken
# export, and would otherwise reach the matcher's regular expressions).
TEXT_LIMITS: dict[str, int] = {
    "record_id": 256,
    "reference": 256,
    "counterparty": 512,
    "group_key": 256,
    "description": 4096,
}


@dataclass(frozen=True)
class Normalised:
    """The outcome of normalising one side: valid rows inside range ± margin, quarantined rows, and
    the number of valid rows outside range ± margin (skipped)."""

    records: pl.DataFrame
    quarantine: pl.DataFrame
    out_of_window: int


def normalise(
    table: pl.DataFrame,
    spec: SideSpec,
    columns: dict[str, list[str]],
    *,
    date_range_start: date,
    date_range_end: date,
    margin_days: int,
    typed_temporal: frozenset[str] = frozenset(),
) -> Normalised:
    """Map, parse and validate ``table`` (string columns plus :data:`LINE_COL` and :data:`RAW_COL`).

    ``columns`` maps each canonical field to the input columns present in ``table`` (already checked
    by the caller); an absent field is empty (or ``line-<n>`` for ``record_id``). Columns in
    ``typed_temporal`` came from typed date/time values and are parsed as ISO whatever the format.
    """
    text = {field: f"{_P}text_{field}" for field in columns}
    used = sorted({c for cols in columns.values() for c in cols})
    stripped = {c: f"{_P}strip_{i}" for i, c in enumerate(used)}
    # Trim each input column once, then blank -> null, then pick the first candidate with a value.
    frame = table.select(
        pl.col(LINE_COL), pl.col(RAW_COL), *(pl.col(c).str.strip_chars().alias(stripped[c]) for c in used)
    )
    frame = frame.with_columns(
        pl.when(pl.col(name).str.len_bytes() > 0).then(pl.col(name)).alias(name) for name in stripped.values()
    )
    frame = frame.with_columns(
        (
            pl.col(stripped[cols[0]]) if len(cols) == 1 else pl.coalesce([pl.col(stripped[c]) for c in cols])
        ).alias(text[field])
        for field, cols in columns.items()
        if field != "any_reference"
    )

    frame, currency_reason = _with_currency(frame, text.get("currency"), spec)
    reasons: list[str] = []
    if "record_id" in text:
        record_id = pl.col(text["record_id"])
        frame = frame.with_columns(
            pl.when(record_id.is_null()).then(pl.lit("record_id: missing")).alias(f"{_P}reason_record_id")
        )
        reasons.append(f"{_P}reason_record_id")
    else:
        record_id = pl.concat_str(pl.lit("line-"), pl.col(LINE_COL).cast(pl.String))

    if "amount" in text:
        frame = with_amount(frame, text["amount"], spec.amount, "amount", required=True)
        amount = pl.col(f"{_P}value_amount")
        reasons.append(f"{_P}reason_amount")
    elif isinstance(spec.columns.amount, AmountExpression):
        frame, amount, reason = _with_amount_expression(frame, text, spec, spec.columns.amount)
        reasons.append(reason)
    else:
        frame = with_amount(frame, text["debit"], spec.amount, "debit", required=False)
        frame = with_amount(frame, text["credit"], spec.amount, "credit", required=False)
        debit, credit = pl.col(f"{_P}value_debit"), pl.col(f"{_P}value_credit")
        both_empty = (
            debit.is_null()
            & credit.is_null()
            & pl.col(f"{_P}reason_debit").is_null()
            & pl.col(f"{_P}reason_credit").is_null()
        )
        frame = frame.with_columns(
            pl.when(both_empty)
            .then(pl.lit("amount: debit and credit are both empty"))
            .alias(f"{_P}reason_dc")
        )
        reasons += [f"{_P}reason_debit", f"{_P}reason_credit", f"{_P}reason_dc"]
        # Money in is positive: credit minus debit. abs() because some banks write debits negative.
        amount = credit.abs().fill_null(0) - debit.abs().fill_null(0)
    if spec.amount.sign == "negate":
        amount = -amount
    elif spec.amount.sign == "abs":
        amount = amount.abs()
    frame = frame.with_columns(amount.alias(f"{_P}amount"))
    amount = pl.col(f"{_P}amount")
    frame = frame.with_columns(
        pl.when(amount.abs() > MAX_ABS_AMOUNT_MINOR)
        .then(
            pl.concat_str(
                pl.lit("amount: "),
                amount.cast(pl.String),
                pl.lit(f" minor units is beyond the largest amount matched ({MAX_ABS_AMOUNT_MINOR})"),
            )
        )
        .alias(f"{_P}reason_range")
    )
    reasons += [currency_reason, f"{_P}reason_range"]
    for field, limit in TEXT_LIMITS.items():
        if field in text:
            length = pl.col(text[field]).str.len_chars()
            frame = frame.with_columns(
                pl.when(length > limit)
                .then(pl.format(f"{field}: {{}} characters, more than the {limit} allowed", length))
                .alias(f"{_P}reason_long_{field}")
            )
            reasons.append(f"{_P}reason_long_{field}")

    date_options = spec.dates
    if any(c in typed_temporal for c in columns["occurred_at"]):
        date_options = spec.dates.model_copy(update={"format": "iso"})
    zone_col = None
    if date_options.timezone_column is not None:
        frame, zone_col = _with_row_zones(frame, table, date_options)
        reasons.append(f"{_P}reason_zone")
    frame = with_datetime(frame, text["occurred_at"], date_options, "occurred_at", zone_col=zone_col)
    reasons.append(f"{_P}reason_occurred_at")
    frame = _with_references(frame, text, [stripped[c] for c in columns.get("any_reference", [])], spec)

    def optional(field: str) -> pl.Expr:
        return pl.col(text[field]) if field in text else pl.lit(None, dtype=pl.String)

    reason_col = f"{_P}reason"
    parsed = frame.select(
        record_id=record_id,
        amount_minor=amount,
        currency=pl.col(f"{_P}currency"),
        occurred_at=pl.col(f"{_P}value_occurred_at"),
        reference=pl.col(f"{_P}reference"),
        description=optional("description"),
        counterparty=optional("counterparty"),
        group_key=optional("group_key"),
        references=pl.col(f"{_P}references"),
        line_number=pl.col(LINE_COL).cast(pl.Int64),
        raw=pl.col(RAW_COL),
        **{reason_col: pl.concat_str([pl.col(r) for r in reasons], separator="; ", ignore_nulls=True)},
    )

    bad = pl.col(reason_col) != ""
    quarantine = parsed.filter(bad).select(
        pl.col("line_number").cast(pl.Int64), pl.col("raw"), pl.col(reason_col).alias("reason")
    )
    valid = parsed.filter(~bad)
    day = pl.col("occurred_at").dt.date()
    lo, hi = date_range_start - timedelta(days=margin_days), date_range_end + timedelta(days=margin_days)
    in_window = valid.filter(day.is_between(pl.lit(lo), pl.lit(hi)))
    records = in_window.with_columns(
        in_range=day.is_between(pl.lit(date_range_start), pl.lit(date_range_end))
    ).select([pl.col(name).cast(dtype) for name, dtype in TRANSACTION_SCHEMA.items()])
    return Normalised(
        records=records,
        quarantine=quarantine.select([pl.col(n).cast(t) for n, t in QUARANTINE_SCHEMA.items()]),
        out_of_window=valid.height - in_window.height,
    )


def _with_references(
    frame: pl.DataFrame, text: dict[str, str], any_columns: list[str], spec: SideSpec
) -> pl.DataFrame:
    """Add the record's ``reference`` (placeholders removed) and ``references``: the values of the
    ``any_reference`` columns and the matches of ``reference_patterns`` in the description and
    reference text, placeholders removed, each once, null when there are none."""
    extra = spec.reference_placeholders
    reference = (
        without_placeholders(pl.col(text["reference"]), extra)
        if "reference" in text
        else pl.lit(None, dtype=pl.String)
    )
    parts = [pl.concat_list([pl.col(c) for c in any_columns])] if any_columns else []
    if spec.reference_patterns:
        searched = [pl.col(text[f]) for f in ("description", "reference") if f in text]
        parts += [pattern_references(column, spec.reference_patterns) for column in searched]
    if not parts:
        references = pl.lit(None, dtype=pl.List(pl.String))
    else:
        listed = pl.concat_list(parts).list.eval(without_placeholders(pl.element(), extra)).list.drop_nulls()
        listed = listed.list.unique(maintain_order=True)
        references = pl.when(listed.list.len() > 0).then(listed)
    return frame.with_columns(reference.alias(f"{_P}reference"), references.alias(f"{_P}references"))


def _with_row_zones(
    frame: pl.DataFrame, table: pl.DataFrame, options: DateOptions
) -> tuple[pl.DataFrame, str]:
    """Add each row's IANA zone (from ``timezone_column``, through ``timezones`` when given; blank:
    ``timezone``) and a reason column for rows whose zone is unknown; returns the zone column name."""
    column = options.timezone_column
    assert column is not None  # the caller checked
    if column not in table.columns:
        raise JobSpecError(
            f"dates.timezone_column names column {column!r}, which is not in the input; "
            f"columns there: {', '.join(c for c in table.columns if not c.startswith(_P))}",
            hint="column names are case-sensitive",
        )
    value = table[column].cast(pl.String).str.strip_chars()
    value = pl.select(pl.when(value.str.len_bytes() > 0).then(value)).to_series()
    if options.timezones:
        zone = value.replace_strict(options.timezones, default=None, return_dtype=pl.String)
        unknown = value.is_not_null() & zone.is_null()
        why = "is not a key of dates.timezones"
    else:
        known = {z: z for z in value.drop_nulls().unique().to_list() if _is_zone(z)}
        zone = value.replace_strict(known, default=None, return_dtype=pl.String)
        unknown = value.is_not_null() & zone.is_null()
        why = "is not an IANA time zone name (such as Europe/Berlin)"
    zone = zone.fill_null(options.timezone)
    zone_col = f"{_P}zone"
    return (
        frame.with_columns(
            zone.alias(zone_col),
            pl.when(unknown)
            .then(_quoted(f"dates.timezone_column {column}", pl.lit(value), why))
            .alias(f"{_P}reason_zone"),
        ),
        zone_col,
    )


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _with_amount_expression(
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
        values.append(pl.col(f"{_P}value_{field}").fill_null(0) * term.sign)
        blanks.append(pl.col(text[f"amount{AMOUNT_TERM_SEPARATOR}{i}"]).is_null())
        term_reasons.append(pl.col(f"{_P}reason_{field}"))
    missing = pl.when(pl.all_horizontal(blanks)).then(pl.lit(f"amount: missing ({expression} are all empty)"))
    frame = frame.with_columns(
        pl.concat_str([*term_reasons, missing], separator="; ", ignore_nulls=True).alias(f"{_P}reason_amount")
    )
    frame = frame.with_columns(
        pl.when(pl.col(f"{_P}reason_amount") != "")
        .then(pl.col(f"{_P}reason_amount"))
        .alias(f"{_P}reason_amount")
    )
    return frame, pl.sum_horizontal(values), f"{_P}reason_amount"


def _quoted(field: str, value: pl.Expr, message: str) -> pl.Expr:
    # concat_str, not pl.format: the values are data and may contain braces.
    return pl.concat_str(pl.lit(f"{field}: '"), value, pl.lit(f"' {message}"))


def _first_reason(cases: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
    """The message of the first condition that holds on each row, else null."""
    reason = pl.lit(None, dtype=pl.String)
    for condition, message in reversed(cases):
        reason = pl.when(condition).then(message).otherwise(reason)
    return reason


def _with_currency(frame: pl.DataFrame, text_col: str | None, spec: SideSpec) -> tuple[pl.DataFrame, str]:
    """Add the currency code, its minor-unit exponent and a reason column; returns the reason name."""
    default = spec.currency.default
    if text_col is not None:
        code = pl.col(text_col).str.to_uppercase()
        if default is not None:
            code = code.fill_null(pl.lit(default))
    else:
        code = pl.lit(default, dtype=pl.String)
    frame = frame.with_columns(code.alias(f"{_P}currency"))
    code = pl.col(f"{_P}currency")
    shown = pl.col(text_col) if text_col is not None else code
    exponents = {**CURRENCY_EXPONENTS, **spec.currency.exponents}
    reason = _first_reason(
        [
            (code.is_null(), pl.lit("currency: missing (and no currency.default is set)")),
            (
                ~code.str.contains(CURRENCY_CODE_PATTERN),
                _quoted("currency", shown, "is not an ISO 4217 code (three letters such as EUR)"),
            ),
        ]
    )
    frame = frame.with_columns(
        code.replace_strict(exponents, default=DEFAULT_EXPONENT, return_dtype=pl.Int64).alias(
            f"{_P}exponent"
        ),
        reason.alias(f"{_P}reason_currency"),
    )
    return frame, f"{_P}reason_currency"


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
    p = f"{_P}{field}_"
    text = pl.col(text_col)
    exponent = pl.col(f"{_P}exponent")
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
    currency_ok = pl.col(f"{_P}reason_currency").is_null()
    missing = pl.lit(f"{field}: missing") if required else pl.lit(None, dtype=pl.String)
    reason = _first_reason(
        [
            (text.is_null(), missing),
            (
                ~ok,
                pl.concat_str(pl.lit(f"{field}: cannot parse '"), text, pl.lit(f"' as {what}{separators}")),
            ),
            (large, _quoted(field, text, "is too large")),
            (
                excess & currency_ok,
                pl.concat_str(
                    pl.lit(f"{field}: '"),
                    text,
                    pl.lit("' has "),
                    fraction.str.len_bytes().cast(pl.String),
                    pl.lit(" decimal places but "),
                    pl.col(f"{_P}currency"),
                    pl.lit(" allows "),
                    exponent.cast(pl.String),
                ),
            ),
        ]
    )
    value = pl.when(text.is_not_null() & ok & ~large).then(pl.col(f"{p}signed"))
    return frame.with_columns(value.alias(f"{_P}value_{field}"), reason.alias(f"{_P}reason_{field}"))


# ISO 8601 after normalising the separator to a space and "Z" to "+00:00".
_ISO_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M%z",
)
_SAMPLE_SIZE = 200


def with_datetime(
    frame: pl.DataFrame, text_col: str, options: DateOptions, field: str, *, zone_col: str | None = None
) -> pl.DataFrame:
    """Add ``value_<field>`` (UTC datetime) and ``reason_<field>`` columns parsed from ``text_col``.

    Naive values are local times in ``options.timezone`` (or, with ``zone_col``, in the zone that
    column names on each row): an ambiguous time (the repeated hour when clocks go back) takes the
    earlier instant; a time that does not exist (the hour skipped when clocks go forward) is refused
    with a reason.
    """
    p = f"{_P}{field}_"
    text = pl.col(text_col)
    fmt = options.format
    aware_col, naive_col = f"{p}aware", f"{p}naive"
    if fmt in ("epoch_seconds", "epoch_millis"):
        # Digit limits keep the value inside the datetime range instead of overflowing.
        seconds = fmt == "epoch_seconds"
        pattern = r"^[+-]?\d{1,11}$" if seconds else r"^[+-]?\d{1,14}$"
        digits = pl.when(text.str.contains(pattern)).then(text).cast(pl.Int64, strict=False)
        epoch = pl.from_epoch(digits, time_unit="s") if seconds else pl.from_epoch(digits, time_unit="ms")
        frame = frame.with_columns(
            epoch.dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias(aware_col),
            pl.lit(None, dtype=pl.Datetime("us")).alias(naive_col),
        )
        described = fmt.replace("_", " ")
    elif fmt == "iso":
        # Normalise the cheap, common variations on the whole column; rarer ones (lower-case "t",
        # a space before the offset) only on the rows the first round leaves unparsed.
        norm = frame.select(
            text.str.replace("T", " ", literal=True).str.replace(r"\s*[Zz]$", "+00:00")
        ).to_series()
        naive, aware = parse_with_formats(norm, _ISO_FORMATS)
        left = (norm.is_not_null() & naive.is_null() & aware.is_null()).arg_true()
        if left.len():
            retry = norm.gather(left).str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt ]\s*", "$1 ")
            retry_naive, retry_aware = parse_with_formats(
                retry.str.replace(r"\s+([+-]\d{2}(:?\d{2})?)$", "$1"), _ISO_FORMATS
            )
            naive.scatter(left, retry_naive)
            aware.scatter(left, retry_aware)
        frame = frame.with_columns(naive.alias(naive_col), aware.alias(aware_col))
        described = "an ISO 8601 date/time"
    else:
        naive, aware = parse_with_formats(frame[text_col], (fmt,))
        frame = frame.with_columns(naive.alias(naive_col), aware.alias(aware_col))
        described = f"a date in format {fmt!r}"

    def in_zone(zone: str) -> pl.Expr:
        return (
            pl.col(naive_col)
            .dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
            .dt.cast_time_unit("us")
        )

    local = in_zone(options.timezone)
    zone_name = options.timezone
    if zone_col is not None:
        # Polars converts one zone per expression: one branch per zone that occurs (bounded by
        # the distinct zones of the file).
        for zone in frame[zone_col].drop_nulls().unique().sort().to_list():
            if zone != options.timezone:
                local = pl.when(pl.col(zone_col) == zone).then(in_zone(zone)).otherwise(local)
        zone_name = "the row's time zone"
    frame = frame.with_columns(pl.coalesce(pl.col(aware_col), local).alias(f"{_P}value_{field}"))
    value = pl.col(f"{_P}value_{field}")
    unparsed = pl.col(naive_col).is_null() & pl.col(aware_col).is_null()
    gap = f"does not exist in {zone_name} (clocks went forward: daylight-saving gap)"
    reason = _first_reason(
        [
            (text.is_null(), pl.lit(f"{field}: missing")),
            (unparsed, _quoted(field, text, f"cannot be parsed as {described}")),
            (value.is_null(), _quoted(field, text, gap)),
        ]
    )
    return frame.with_columns(reason.alias(f"{_P}reason_{field}"))


def parse_with_formats(text: pl.Series, formats: tuple[str, ...]) -> tuple[pl.Series, pl.Series]:
    """Parse ``text`` with strftime ``formats``: returns ``(naive, aware_utc)`` datetime series
    (microseconds), null where no format parsed the value.

    Each format is tried only on the rows the earlier ones left unparsed, starting with the format
    that parses most of a small sample: a failing parse costs as much as a succeeding one, so trying
    every format on every row would multiply the cost for no gain.
    """
    size = text.len()
    naive = pl.repeat(None, size, dtype=pl.Datetime("us"), eager=True)
    aware = pl.repeat(None, size, dtype=pl.Datetime("us", "UTC"), eager=True)
    remaining = text.is_not_null().arg_true()
    sample = text.gather(remaining.head(_SAMPLE_SIZE))
    hits = {f: sample.str.to_datetime(f, time_unit="us", strict=False).is_not_null().sum() for f in formats}
    for fmt in sorted(formats, key=lambda f: -hits[f]):
        if remaining.len() == 0:
            break
        subset = text if remaining.len() == size else text.gather(remaining)
        parsed = subset.str.to_datetime(fmt, time_unit="us", strict=False)
        hit = parsed.is_not_null()
        if not hit.any():
            continue
        if "%z" in fmt:
            aware.scatter(remaining.filter(hit), parsed.filter(hit).dt.convert_time_zone("UTC"))
        else:
            naive.scatter(remaining.filter(hit), parsed.filter(hit))
        remaining = remaining.filter(~hit)
    return naive, aware
