"""Writing generated exports as the files a user would receive."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import polars as pl

from settler_pipeline.errors import ValidationError
from settler_pipeline.files import atomic_replace
from settler_pipeline.sample.data import SampleData


def write_sample_files(
    sample: SampleData,
    directory: str | os.PathLike[str],
    *,
    fmt: Literal["csv", "parquet", "jsonl"] = "csv",
    include_truth: bool = False,
) -> dict[str, Path]:
    """Write both sides as raw exports ``source.<ext>`` and ``target.<ext>`` in ``directory``
    (created if needed); with ``include_truth`` also ``truth.parquet``, ``twins.parquet`` and
    ``decoys.parquet``. Returns the paths by name (``source``, ``target``, ...). Files appear
    atomically.

    Every column is a string, exactly as the exports carry it (empty cells are empty / null):

    ``source`` (Stripe-like balance transactions), columns in this order:
      ``id`` (``ch_3...`` / ``re_3...``), ``created`` (UTC, ``2026-11-01 13:45:00``), ``amount``
      (signed decimal in major units, ``12.34`` / ``-12.34``), ``currency`` (lower case, ``usd``),
      ``description``, ``reporting_category`` (``charge`` | ``refund``), ``customer_name``,
      ``invoice_number`` (``INV-000123``; empty for card payments without invoice), ``payout``
      (``po_1...``; empty unless settled in a batch payout).

    ``target`` (bank statement), columns in this order:
      ``Date`` (booking time in the account's zone, ``dd/mm/yyyy HH:MM``), ``Account`` (IBAN or
      account number; its zone is in :data:`~settler_pipeline.sample.rates.BANK_ACCOUNTS`),
      ``Transaction ID`` (``BT...``), ``Description`` (the memo or purpose text), ``Reference``
      (free text, often empty or a placeholder such as ``NOTPROVIDED``), ``Amount`` (signed,
      thousands separators, ``1,234.56`` / ``-45.00``; credits positive), ``Currency`` (upper case).

    Canonical mapping (what :func:`~settler_pipeline.sample.generate.generate_sample` returns):
    source ``id`` -> record_id (and a further reference), ``amount`` x 100 -> amount_minor,
    ``currency`` upper-cased, ``created`` -> occurred_at (UTC), ``invoice_number`` -> reference,
    ``customer_name`` -> counterparty, ``payout`` -> group_key; target ``Transaction ID`` ->
    record_id, ``Date`` in the account's zone -> occurred_at (UTC), ``Description`` -> description,
    ``Reference`` -> reference (a placeholder is none), no counterparty or group key.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    frames = {"source": sample.source_raw, "target": sample.target_raw}
    paths: dict[str, Path] = {}
    for name, frame in frames.items():
        paths[name] = _write_atomic(frame, folder / f"{name}.{fmt}", fmt)
    if include_truth:
        for name in ("truth", "twins", "decoys"):
            paths[name] = _write_atomic(getattr(sample, name), folder / f"{name}.parquet", "parquet")
    return paths


def _write_atomic(frame: pl.DataFrame, path: Path, fmt: str) -> Path:
    if fmt not in ("csv", "parquet", "jsonl"):
        raise ValidationError(f"unknown sample file format {fmt!r}", hint="use csv, parquet or jsonl")
    with atomic_replace(path) as staging:
        if fmt == "csv":
            frame.write_csv(staging)
        elif fmt == "parquet":
            frame.write_parquet(staging)
        else:
            frame.write_ndjson(staging)
    return path
