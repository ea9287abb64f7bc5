"""Analyst columns: what the read models show beside their stored columns, in ``analytics.duckdb`` and in
`settler sql` alike (the same names, order and values in both).

* ``tenant`` after ``tenant_id``: the tenant's name, as the access list names it (the application layer
  passes the names in; the read models themselves only know ids).
* ``<amount>_major`` after each minor-unit amount (``amount``, ``target_amount``,
  ``amount_difference``, ``closest_amount``) of a table with a ``currency``: the same amount in major
  units as an exact DECIMAL (1234 EUR cents are 12.34), with as many places as the table's currency
  with the most minor-unit digits needs (2 for EUR and USD, 3 once a KWD row is there). A run whose
  job spec declares exponents of its own (``currency.exponents``: :mod:`.exponents`) has its amounts
  shown with those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from settler_pipeline.adapters.amounts import CURRENCY_EXPONENTS, DEFAULT_EXPONENT

AMOUNT_COLUMNS: Final = ("amount", "target_amount", "amount_difference", "closest_amount")
TENANT_DOC: Final = "The tenant's name (from the access list, as of the last update of the read models)."
MAJOR_DOC: Final = "{column} in major units of the currency, an exact decimal (1234 EUR cents are 12.34)."


def scale_of(currencies: Iterable[str], declared: Mapping[str, Mapping[str, int]] | None = None) -> int:
    """Decimal places that show every amount of ``currencies`` exactly (the default for none), also
    where runs declared exponents of their own (``declared``: run id -> code -> exponent)."""
    codes = set(currencies)
    own = [x for exponents in (declared or {}).values() for code, x in exponents.items() if code in codes]
    return max(
        [CURRENCY_EXPONENTS.get(code, DEFAULT_EXPONENT) for code in codes] + own, default=DEFAULT_EXPONENT
    )


def every_currency(declared: Mapping[str, Mapping[str, int]] | None = None) -> list[str]:
    """Every code whose exponent is known (the built-in table's and those runs declared): the
    currencies to size the ``_major`` amounts of a table whose own are not known in advance (the log's
    events, where a superseded run's or a margin record's currency may be in no read model), so
    that every amount is exact (never rounded to another currency's places)."""
    return sorted(set(CURRENCY_EXPONENTS) | {code for own in (declared or {}).values() for code in own})


def added_columns(columns: Sequence[str]) -> list[tuple[str, str]]:
    """The analyst columns a table with ``columns`` gets, each as ``(name, after)``: the stored column it
    follows."""
    added = [("tenant", "tenant_id")] if "tenant_id" in columns else []
    if "currency" in columns:
        added += [(f"{c}_major", c) for c in AMOUNT_COLUMNS if c in columns]
    return added


def currency_of(amount: str, columns: Sequence[str]) -> str:
    """The column holding the currency of ``amount``: ``closest_currency`` for ``closest_amount`` (the
    closest candidate may be in another currency), where the table has it; else ``currency``."""
    return "closest_currency" if amount == "closest_amount" and "closest_currency" in columns else "currency"


def run_of(columns: Sequence[str]) -> str | None:
    """The column naming a row's run: ``reconciliation_id`` in a read model, ``aggregate_id`` in
    ``events``; None when there is neither."""
    return next((c for c in ("reconciliation_id", "aggregate_id") if c in columns), None)


def in_order(columns: Sequence[str]) -> list[str]:
    """``columns`` with each analyst column right after the column it describes."""
    order = list(columns)
    for name, after in added_columns(columns):
        order.insert(order.index(after) + 1, name)
    return order


def select_sql(
    source: str,
    columns: Sequence[str],
    integer: Sequence[str],
    tenant_names: Mapping[str, str],
    scale: int,
    declared: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """``SELECT`` over the subquery ``source`` (which has ``columns``) adding the analyst columns;
    ``integer`` are the columns holding whole minor units (only those get a ``_major``), in the
    exponents of the built-in table except where the row's run declared its own (``declared``: run id
    -> code -> exponent). Names, ids and codes are our own read models', the access list's and
    validated job specs', quoted as literals here: DuckDB views take no bound parameters."""
    expressions = {c: f"b.{c}" for c in columns}
    for name, after in added_columns(columns):
        if name == "tenant":
            expressions[name] = f"{_case('b.tenant_id', tenant_names.items(), 'NULL')} AS tenant"
        elif after in integer:
            # exact: whole minor units times a decimal factor (0.01 for EUR), then the table's scale
            factors = [(code, _factor(exponent)) for code, exponent in sorted(CURRENCY_EXPONENTS.items())]
            currency = f"b.{currency_of(after, columns)}"
            factor = _case(currency, factors, _factor(DEFAULT_EXPONENT), quote_values=False)
            if declared and run_of(columns):
                own = [
                    f"WHEN b.{run_of(columns)} = {_literal(run)} AND {currency} = {_literal(code)} "
                    f"THEN {_factor(exponent)}"
                    for run, exponents in sorted(declared.items())
                    for code, exponent in sorted(exponents.items())
                ]
                factor = f"CASE {' '.join(own)} ELSE {factor} END"
            expressions[name] = (
                f"CAST(CAST(b.{after} AS DECIMAL(38, 0)) * {factor} AS DECIMAL(38, {scale})) AS {name}"
            )
    shown = ", ".join(expressions[c] for c in in_order(columns) if c in expressions)
    return f"SELECT {shown} FROM ({source}) AS b"  # noqa: S608


def _factor(exponent: int) -> str:
    digits = "1" if exponent == 0 else "0." + "0" * (exponent - 1) + "1"  # 10^-exponent, written exactly
    return f"CAST({digits} AS DECIMAL(38, {_MAX_EXPONENT}))"


def _case(subject: str, pairs: Iterable[tuple[str, str]], default: str, *, quote_values: bool = True) -> str:
    whens = [
        f"WHEN {_literal(key)} THEN {_literal(value) if quote_values else value}" for key, value in pairs
    ]
    return f"CASE {subject} {' '.join(whens)} ELSE {default} END" if whens else default


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_MAX_EXPONENT: Final = 4  # the most a job spec may declare, and the built-in table's most
