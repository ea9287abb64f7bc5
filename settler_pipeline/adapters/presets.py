"""Presets: ready-made column mappings and parsing options for common export layouts.

A side's ``preset:`` fills in ``columns``, ``amount``, ``dates``, ``currency`` and (for CSV) ``csv``
defaults; any key the spec sets explicitly overrides the preset's value for that key. Mapping a
``debit``/``credit`` pair replaces a preset's ``amount`` column. Columns a preset marks optional may be
absent from the file.

``stripe_balance_transactions`` expects Stripe's balance-transactions export, one row per balance
transaction (this is also the layout :func:`settler_pipeline.sample.write_sample_files` writes)::

    id,created,amount,currency,description,reporting_category,customer_name,invoice_number,payout
    ch_3PqR2s,2024-03-01 09:15:02,120.00,eur,Invoice INV-001001,charge,Ada Lovelace,INV-001001,po_1PqZ9x
    re_3PqR3t,2024-03-01 11:02:40,-15.50,eur,Refund INV-000996,refund,Alan Turing,INV-000996,

``amount`` is a signed decimal in major units ("12.34"), ``currency`` lower case, ``created``
``YYYY-MM-DD HH:MM:SS`` in UTC, ``payout`` the payout the transaction was settled in (the group key
that a bank payout line sums up). Optional columns, used when present: the reference from the first
of ``reference``, ``invoice_number``, ``metadata[order_id]``, ``metadata.order_id``,
``order_id (metadata)``, ``metadata[invoice]``; the counterparty from ``customer_name``,
``customer_description`` or ``customer_email``; ``description``; ``payout``.
``reporting_category`` stays in ``raw``.

``bank_statement_csv`` expects a typical bank statement export (the sample generator writes the
columns ``Date,Transaction ID,Description,Reference,Amount,Currency``)::

    Date,Description,Amount,Currency,Reference
    04/03/2024,STRIPE PAYOUT po_1PqZ9x,"1,204.50",EUR,STRIPE-PO-0301
    05/03/2024,CARD PAYMENT ACME LTD,-42.00,EUR,

``Date`` is ``dd/mm/yyyy`` (a calendar date, kept as midnight UTC), ``Amount`` a signed decimal with
optional thousands separators, ``Currency`` the ISO code, ``Reference`` the bank's reference field and
``Description`` the memo (the matcher also searches source references inside it). An id column
(``Transaction ID``/``ID``/``Id``) and a counterparty column (``Counterparty``/``Payee``) are used when
present; without an id column the record id is ``line-<n>``.
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "stripe_balance_transactions": {
        "columns": {
            "record_id": "id",
            "amount": "amount",
            "currency": "currency",
            "occurred_at": "created",
            "reference": [
                "reference",
                "invoice_number",
                "metadata[order_id]",
                "metadata.order_id",
                "order_id (metadata)",
                "metadata[invoice]",
            ],
            "description": "description",
            "counterparty": ["customer_name", "customer_description", "customer_email"],
            "group_key": "payout",
            "optional": ["reference", "description", "counterparty", "group_key"],
        },
        "amount": {"format": "decimal", "decimal_separator": ".", "thousands_separator": ","},
        "dates": {"format": "%Y-%m-%d %H:%M:%S", "timezone": "UTC"},
        "csv": {"delimiter": ",", "header": True},
    },
    "bank_statement_csv": {
        "columns": {
            "record_id": ["Transaction ID", "ID", "Id"],
            "amount": "Amount",
            "currency": "Currency",
            "occurred_at": "Date",
            "reference": "Reference",
            "description": "Description",
            "counterparty": ["Counterparty", "Payee"],
            "optional": ["record_id", "reference", "counterparty"],
        },
        "amount": {"format": "decimal", "decimal_separator": ".", "thousands_separator": ","},
        "dates": {"format": "%d/%m/%Y", "timezone": "UTC"},
        "csv": {"delimiter": ",", "header": True},
    },
}

_SECTIONS = ("columns", "amount", "dates", "currency", "csv")


def preset_names() -> list[str]:
    """The names of all presets."""
    return sorted(PRESETS)


def apply_preset(name: str, side: dict[str, Any]) -> dict[str, Any]:
    """Return ``side`` (a raw side mapping) with preset ``name``'s defaults filled in.

    Explicit keys win. An unknown name returns ``side`` unchanged so that validation reports it with
    the list of valid names. The ``csv`` defaults apply only to ``adapter: csv``.
    """
    preset = PRESETS.get(name)
    if preset is None:
        return side
    merged = dict(side)
    for section in _SECTIONS:
        defaults = preset.get(section)
        if defaults is None:
            continue
        if section == "csv" and side.get("adapter") != "csv":
            continue
        given = side.get(section)
        if given is None:
            given = {}
        if not isinstance(given, dict):
            # Leave a malformed section for validation to report with its field path.
            continue
        if section == "columns":
            merged[section] = _merge_columns(copy.deepcopy(defaults), given)
        else:
            merged[section] = {**copy.deepcopy(defaults), **given}
    return merged


def _merge_columns(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    preset_optional = set(defaults.pop("optional", []))
    named = {field for field, value in given.items() if value is not None and field != "optional"}
    if "debit" in named or "credit" in named:
        defaults.pop("amount", None)
    if "amount" in named:
        defaults.pop("debit", None)
        defaults.pop("credit", None)
    # An explicit null removes a preset's mapping; anything else given replaces it.
    merged = {**defaults, **given}
    # A column the spec names itself must exist, even where the preset's own default was optional.
    optional = [f for f in sorted(preset_optional) if f not in named]
    user_optional = given.get("optional")
    if isinstance(user_optional, list):
        optional = sorted(set(optional) | {str(f) for f in user_optional})
    elif user_optional is not None:
        optional = user_optional
    merged["optional"] = optional
    return merged
