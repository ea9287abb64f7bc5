"""Normalisation: from a table of string columns to the canonical transaction schema.

Everything here is Polars expressions over whole columns, applied in stages: each stage materialises
intermediate columns that the next one reads, because eager Polars would otherwise re-evaluate a
shared sub-expression (a regex extraction, a date parse) once per use. Each canonical field yields a
value column and a per-row *reason* column (null when the value is fine); the reasons are joined into
one column that splits the rows into valid records and quarantined rows, so a bad row is reported,
never dropped.

The parsing of each field lives beside this module: amounts and currencies in
:mod:`~settler_pipeline.adapters.amounts`, dates and times in :mod:`~settler_pipeline.adapters.timestamps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from settler_pipeline.adapters.amounts import with_amount, with_amount_expression, with_currency
from settler_pipeline.adapters.reasons import LINE_COL, PREFIX, raw_json, sparse_reason
from settler_pipeline.adapters.timestamps import with_datetime, with_row_zones
from settler_pipeline.domain.matching.normalise import pattern_references, without_placeholders
from settler_pipeline.domain.matching.tolerance import MAX_ABS_AMOUNT_MINOR
from settler_pipeline.domain.transactions import QUARANTINE_SCHEMA, TRANSACTION_SCHEMA
from settler_pipeline.jobspec import (
    AmountExpression,
    SideSpec,
)

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
    keep_raw: bool = True,
) -> Normalised:
    """Map, parse and validate ``table`` (string columns plus :data:`LINE_COL`, and :data:`RAW_COL`
    where the reader kept the original text).

    ``columns`` maps each canonical field to the input columns present in ``table`` (already checked
    by the caller); an absent field is empty (or ``line-<n>`` for ``record_id``). Columns in
    ``typed_temporal`` came from typed date/time values and are parsed as ISO whatever the format.
    Quarantined rows always carry their ``raw`` row; valid records only with ``keep_raw`` (else null).
    """
    text = {field: f"{PREFIX}text_{field}" for field in columns}
    used = sorted({c for cols in columns.values() for c in cols})
    stripped = {c: f"{PREFIX}strip_{i}" for i, c in enumerate(used)}
    # Trim each input column once, then blank -> null, then pick the first candidate with a value.
    frame = table.select(pl.col(LINE_COL), *(pl.col(c).str.strip_chars().alias(stripped[c]) for c in used))
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

    frame, currency_reason = with_currency(frame, text.get("currency"), spec)
    reasons: list[str] = []
    if "record_id" in text:
        record_id = pl.col(text["record_id"])
        frame = frame.with_columns(
            pl.when(record_id.is_null()).then(pl.lit("record_id: missing")).alias(f"{PREFIX}reason_record_id")
        )
        reasons.append(f"{PREFIX}reason_record_id")
    else:
        record_id = pl.concat_str(pl.lit("line-"), pl.col(LINE_COL).cast(pl.String))

    if "amount" in text:
        frame = with_amount(frame, text["amount"], spec.amount, "amount", required=True)
        amount = pl.col(f"{PREFIX}value_amount")
        reasons.append(f"{PREFIX}reason_amount")
    elif isinstance(spec.columns.amount, AmountExpression):
        frame, amount, reason = with_amount_expression(frame, text, spec, spec.columns.amount)
        reasons.append(reason)
    else:
        frame = with_amount(frame, text["debit"], spec.amount, "debit", required=False)
        frame = with_amount(frame, text["credit"], spec.amount, "credit", required=False)
        debit, credit = pl.col(f"{PREFIX}value_debit"), pl.col(f"{PREFIX}value_credit")
        both_empty = (
            debit.is_null()
            & credit.is_null()
            & pl.col(f"{PREFIX}reason_debit").is_null()
            & pl.col(f"{PREFIX}reason_credit").is_null()
        )
        frame = frame.with_columns(
            pl.when(both_empty)
            .then(pl.lit("amount: debit and credit are both empty"))
            .alias(f"{PREFIX}reason_dc")
        )
        reasons += [f"{PREFIX}reason_debit", f"{PREFIX}reason_credit", f"{PREFIX}reason_dc"]
        # Money in is positive: credit minus debit. abs() because some banks write debits negative.
        amount = credit.abs().fill_null(0) - debit.abs().fill_null(0)
    if spec.amount.sign == "negate":
        amount = -amount
    elif spec.amount.sign == "abs":
        amount = amount.abs()
    frame = frame.with_columns(amount.alias(f"{PREFIX}amount"))
    amount = pl.col(f"{PREFIX}amount")
    beyond = pl.concat_str(
        pl.lit("amount: "),
        amount.cast(pl.String),
        pl.lit(f" minor units is beyond the largest amount matched ({MAX_ABS_AMOUNT_MINOR})"),
    )
    frame = frame.with_columns(
        sparse_reason(frame, [(amount.abs() > MAX_ABS_AMOUNT_MINOR, beyond)]).alias(f"{PREFIX}reason_range")
    )
    reasons += [currency_reason, f"{PREFIX}reason_range"]
    for field, limit in TEXT_LIMITS.items():
        if field in text:
            length = pl.col(text[field]).str.len_chars()
            message = pl.format(f"{field}: {{}} characters, more than the {limit} allowed", length)
            frame = frame.with_columns(
                sparse_reason(frame, [(length > limit, message)]).alias(f"{PREFIX}reason_long_{field}")
            )
            reasons.append(f"{PREFIX}reason_long_{field}")

    date_options = spec.dates
    if any(c in typed_temporal for c in columns["occurred_at"]):
        date_options = spec.dates.model_copy(update={"format": "iso"})
    zone_col = None
    if date_options.timezone_column is not None:
        frame, zone_col = with_row_zones(frame, table, date_options)
        reasons.append(f"{PREFIX}reason_zone")
    frame = with_datetime(frame, text["occurred_at"], date_options, "occurred_at", zone_col=zone_col)
    reasons.append(f"{PREFIX}reason_occurred_at")
    frame = _with_references(frame, text, [stripped[c] for c in columns.get("any_reference", [])], spec)

    def optional(field: str) -> pl.Expr:
        return pl.col(text[field]) if field in text else pl.lit(None, dtype=pl.String)

    # The reasons are joined only on the rows that have one: joining them on every row built a
    # string per row only to find it empty.
    bad = pl.col(f"{PREFIX}bad")
    frame = frame.with_columns(
        pl.any_horizontal([pl.col(r).is_not_null() for r in reasons]).alias(bad.meta.output_name())
    )
    quarantine = _with_raw(
        table,
        frame.filter(bad).select(
            line_number=pl.col(LINE_COL).cast(pl.Int64),
            reason=pl.concat_str([pl.col(r) for r in reasons], separator="; ", ignore_nulls=True),
        ),
    )
    valid = frame.filter(~bad).select(
        record_id=record_id,
        amount_minor=amount,
        currency=pl.col(f"{PREFIX}currency"),
        occurred_at=pl.col(f"{PREFIX}value_occurred_at"),
        reference=pl.col(f"{PREFIX}reference"),
        description=optional("description"),
        counterparty=optional("counterparty"),
        group_key=optional("group_key"),
        references=pl.col(f"{PREFIX}references"),
        line_number=pl.col(LINE_COL).cast(pl.Int64),
    )
    day = pl.col("occurred_at").dt.date()
    lo, hi = date_range_start - timedelta(days=margin_days), date_range_end + timedelta(days=margin_days)
    in_window = valid.filter(day.is_between(pl.lit(lo), pl.lit(hi)))
    in_window = (
        _with_raw(table, in_window) if keep_raw else in_window.with_columns(raw=pl.lit(None, pl.String))
    )
    records = in_window.with_columns(
        in_range=day.is_between(pl.lit(date_range_start), pl.lit(date_range_end))
    ).select([pl.col(name).cast(dtype) for name, dtype in TRANSACTION_SCHEMA.items()])
    return Normalised(
        records=records,
        quarantine=quarantine.select([pl.col(n).cast(t) for n, t in QUARANTINE_SCHEMA.items()]),
        out_of_window=valid.height - in_window.height,
    )


def _with_raw(table: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (with ``line_number``) with the ``raw`` JSON of their rows of ``table``, computed for
    those rows only, in their order."""
    if rows.height == 0:
        # Joining against the whole table would cost a pass over it for no row.
        return rows.with_columns(raw=pl.lit(None, dtype=pl.String))
    wanted = table.join(rows.select(pl.col("line_number").alias(LINE_COL)), on=LINE_COL, how="semi")
    raw = wanted.select(pl.col(LINE_COL).alias("line_number"), raw_json(table).alias("raw"))
    return rows.join(raw, on="line_number", how="left", maintain_order="left")


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
    # Placeholders leave the plain columns before they become lists: a list.eval per row costs
    # far more than one pass over a column; only the pattern matches (lists already) need it.
    parts = (
        [pl.concat_list([without_placeholders(pl.col(c), extra) for c in any_columns])] if any_columns else []
    )
    if spec.reference_patterns:
        searched = [pl.col(text[f]) for f in ("description", "reference") if f in text]
        parts += [
            pattern_references(column, spec.reference_patterns).list.eval(
                without_placeholders(pl.element(), extra)
            )
            for column in searched
        ]
    if not parts:
        references = pl.lit(None, dtype=pl.List(pl.String))
    elif len(any_columns) == 1 and len(parts) == 1:
        # The common case (one column of other references): a one-element list, or null.
        value = without_placeholders(pl.col(any_columns[0]), extra)
        references = pl.when(value.is_not_null()).then(pl.concat_list([value]))
    else:
        listed = pl.concat_list(parts).list.drop_nulls()
        if len(any_columns) > 1 or len(parts) > 1:
            listed = listed.list.unique(maintain_order=True)
        references = pl.when(listed.list.len() > 0).then(listed)
    return frame.with_columns(reference.alias(f"{PREFIX}reference"), references.alias(f"{PREFIX}references"))
