"""Builders shared by the matcher tests (this module holds no tests itself)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from settler_pipeline.domain.matching import MatchConfig, MatchPass, MatchResult, match_records
from settler_pipeline.domain.transactions import TRANSACTION_SCHEMA

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def records(*rows: dict[str, Any]) -> pl.DataFrame:
    """Transactions in the canonical schema: line numbers 1..n, currency USD, in range, at noon
    UTC on 1 Nov 2026 plus ``day`` days (or exactly at ``at``); record ids default to ``r<line>``."""
    built = []
    for line, row in enumerate(rows, start=1):
        values = dict(row)
        day = values.pop("day", 0)
        at = values.pop("at", BASE_TIME + timedelta(days=day))
        built.append(
            {
                "record_id": f"r{line}",
                "currency": "USD",
                "reference": None,
                "description": None,
                "counterparty": None,
                "group_key": None,
                "references": None,
                "line_number": line,
                "in_range": True,
                "raw": None,
                "occurred_at": at,
                **values,
            }
        )
    return pl.DataFrame(built, schema=TRANSACTION_SCHEMA)


def run(
    source: Iterable[dict[str, Any]] | pl.DataFrame,
    target: Iterable[dict[str, Any]] | pl.DataFrame,
    *passes: MatchPass,
    run_id: str = "run-1",
) -> MatchResult:
    """Match the given rows with ``passes`` (the default configuration when none are given)."""
    source_frame = source if isinstance(source, pl.DataFrame) else records(*source)
    target_frame = target if isinstance(target, pl.DataFrame) else records(*target)
    config = MatchConfig(passes=list(passes)) if passes else MatchConfig()
    return match_records(source_frame, target_frame, config, run_id=run_id)


def links(result: MatchResult, status: str | None = None) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The matches as (source ids, target ids), optionally only those with ``status``."""
    frame = result.matches if status is None else result.matches.filter(pl.col("status") == status)
    return {(tuple(row["source_ids"]), tuple(row["target_ids"])) for row in frame.iter_rows(named=True)}


def reasons(result: MatchResult) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """Unmatched records as {(side, record id): (reason, candidate ids)}."""
    return {
        (row["side"], row["record_id"]): (row["reason"], list(row["candidate_ids"]))
        for row in result.unmatched.iter_rows(named=True)
    }


def only_match(result: MatchResult) -> dict[str, Any]:
    """The single match of ``result`` as a dict (fails if there is not exactly one)."""
    assert result.matches.height == 1, result.matches
    return result.matches.row(0, named=True)
