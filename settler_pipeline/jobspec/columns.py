"""Column mapping of a job-spec side: which input column(s) hold each canonical field, and amounts
computed from several columns (``gross - fee``)."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

ColumnField = Literal[
    "record_id",
    "amount",
    "debit",
    "credit",
    "currency",
    "occurred_at",
    "reference",
    "description",
    "counterparty",
    "group_key",
    "any_reference",
]


def _as_column_list(value: object) -> object:
    # One column name is the common case; a list means "the first of these columns with a value".
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError("expected a column name or a list of column names")


ColumnRef = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_as_column_list), Field(min_length=1)
]

# A binary + or - between column names needs spaces around it: "net-amount" stays one column name.
_TERM_SPLIT = re.compile(r"\s+([+-])\s+")
AMOUNT_TERM_SEPARATOR = "#"
"""Mapped field names of an amount expression's terms: ``amount#0``, ``amount#1``, ..."""


class AmountTerm(BaseModel):
    """One column of an amount expression, added (``sign`` 1) or subtracted (-1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sign: Literal[1, -1] = 1
    column: str = Field(min_length=1)


class AmountExpression(BaseModel):
    """An amount computed from several columns of the row: ``gross - fee``, ``net + tip``, ``- amount``.

    Each column is parsed as an amount on its own (same format options); a blank term counts as 0, a
    row whose terms are all blank is quarantined as missing its amount."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    terms: list[AmountTerm] = Field(min_length=1, max_length=20)

    def __str__(self) -> str:
        text = ""
        for i, term in enumerate(self.terms):
            op = "-" if term.sign < 0 else "+"
            text += (f"{op} " if op == "-" else "") + term.column if i == 0 else f" {op} {term.column}"
        return text


def parse_amount_expression(text: str) -> AmountExpression | None:
    """``"gross - fee"`` as an :class:`AmountExpression`; ``None`` for a plain column name. Operators
    are ``+`` and ``-`` with spaces around them; a leading ``-`` flips the sign of the first column."""
    body = text.strip()
    sign: Literal[1, -1] = 1
    if body.startswith("-") and len(body) > 1:
        sign, body = -1, body[1:].strip()
    parts = _TERM_SPLIT.split(body)
    if len(parts) == 1 and sign == 1:
        return None
    terms = [AmountTerm(sign=sign, column=parts[0].strip())]
    for op, column in zip(parts[1::2], parts[2::2], strict=True):
        terms.append(AmountTerm(sign=1 if op == "+" else -1, column=column.strip()))
    if any(not t.column or _TERM_SPLIT.search(f" {t.column} ") for t in terms):
        raise ValueError(f"cannot read the amount expression {text!r}; write it like 'gross - fee'")
    return AmountExpression(terms=terms)


def _as_amount_ref(value: object) -> object:
    # A string with + or - between names is an expression; a list is always column names.
    if isinstance(value, str) and (expression := parse_amount_expression(value)) is not None:
        return expression
    if isinstance(value, dict | AmountExpression):
        return value
    return _as_column_list(value)


AmountRef = Annotated[
    AmountExpression | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)],
    BeforeValidator(_as_amount_ref),
]


class ColumnMap(BaseModel):
    """Which input column holds each canonical field.

    Each value is a column name, or a list of column names meaning "the first of these that has a
    value on the row" (columns absent from the file are skipped; at least one must exist). A field
    listed in ``optional`` may name columns that are all absent: the field is then empty.
    ``amount`` and the ``debit``/``credit`` pair are alternatives. Without ``record_id`` the id is
    ``line-<n>`` (the data row number), which is stable for the same file.

    ``any_reference`` is the other list form: *every* one of these columns that has a value on the
    row is a reference of the record (the matcher tries each), beside the one ``reference`` holds.

    ``amount`` may also be computed from several columns: ``amount: gross - fee`` (see
    :class:`AmountExpression`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: ColumnRef | None = None
    amount: AmountRef | None = None
    debit: ColumnRef | None = None
    credit: ColumnRef | None = None
    currency: ColumnRef | None = None
    occurred_at: ColumnRef | None = None
    reference: ColumnRef | None = None
    description: ColumnRef | None = None
    counterparty: ColumnRef | None = None
    group_key: ColumnRef | None = None
    any_reference: ColumnRef | None = None
    optional: list[ColumnField] = Field(default_factory=list)

    @model_validator(mode="after")
    def _amount_xor_debit_credit(self) -> ColumnMap:
        if self.amount is not None and (self.debit is not None or self.credit is not None):
            raise ValueError("map either amount or the debit/credit pair, not both")
        if self.amount is None and (self.debit is None) != (self.credit is None):
            raise ValueError("debit and credit go together: map both columns (or map amount instead)")
        if self.amount is None and self.debit is None:
            raise ValueError("map amount (one signed column) or debit and credit (two columns)")
        if self.occurred_at is None:
            raise ValueError("map occurred_at: the column holding the transaction date/time")
        for required in ("amount", "debit", "credit", "occurred_at"):
            if required in self.optional:
                raise ValueError(f"{required} cannot be optional")
        return self

    def mapped(self) -> dict[str, list[str]]:
        """The canonical fields that are mapped, with their candidate columns."""
        out: dict[str, list[str]] = {}
        for name in typing.get_args(ColumnField):
            value = getattr(self, name)
            if isinstance(value, AmountExpression):
                # every column of an expression must be there: one mapped field per term
                for i, term in enumerate(value.terms):
                    out[f"{name}{AMOUNT_TERM_SEPARATOR}{i}"] = [term.column]
            elif value is not None:
                out[name] = list(value)
        return out
