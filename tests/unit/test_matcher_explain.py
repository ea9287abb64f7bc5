"""Explained exceptions: each unmatched record names the candidate that came closest and why it was
rejected."""

from __future__ import annotations

from typing import Any

from settler_pipeline.domain.matching import AmountDatePass, MatchResult, ReferencePass
from tests.unit.test_matcher_support import run


def closest(result: MatchResult, side: str, record_id: str) -> tuple[Any, ...]:
    row = result.unmatched.filter(side=side, record_id=record_id).row(0, named=True)
    return (
        row["closest_id"],
        row["closest_amount_minor"],
        row["closest_reference"],
        row["closest_rejection"],
    )


def test_a_short_payment_names_the_bank_line_and_the_amount_difference() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 10000, "reference": "INV-1"}],
        [{"record_id": "bt_1", "amount_minor": 6000, "reference": "INV-1"}],
        ReferencePass(),
        AmountDatePass(),
    )
    assert closest(result, "source", "ch_1") == ("bt_1", 6000, "INV-1", "amount_difference")
    assert closest(result, "target", "bt_1") == ("ch_1", 10000, "INV-1", "amount_difference")
    row = result.unmatched.filter(record_id="bt_1").row(0, named=True)
    assert row["closest_occurred_at"] is not None


def test_a_conflicting_reference_is_named_as_the_rejection() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 7900, "reference": "INV-7"}],
        [{"record_id": "bt_1", "amount_minor": 7900, "reference": "INV-8", "day": 1}],
        AmountDatePass(),
    )
    assert closest(result, "source", "ch_1") == ("bt_1", 7900, "INV-8", "reference_conflict")


def test_a_candidate_used_by_another_match_is_matched_elsewhere() -> None:
    result = run(
        [
            {"record_id": "ch_1", "amount_minor": 5000, "reference": "INV-1"},
            {"record_id": "ch_2", "amount_minor": 5000, "day": 5},
        ],
        [{"record_id": "bt_1", "amount_minor": 5000, "reference": "INV-1"}],
        ReferencePass(),
        AmountDatePass(mismatch_search_days=0),
    )
    assert closest(result, "source", "ch_2")[::3] == ("bt_1", "matched_elsewhere")


def test_a_settlement_outside_every_window_is_date_outside_window() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 5000}],
        [{"record_id": "bt_1", "amount_minor": 5000, "day": 6}],
        AmountDatePass(mismatch_search_days=0),
    )
    assert closest(result, "source", "ch_1")[::3] == ("bt_1", "date_outside_window")


def test_twins_name_a_tied_competitor() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 5000}, {"record_id": "ch_2", "amount_minor": 5000}],
        [{"record_id": "bt_1", "amount_minor": 5000}],
        AmountDatePass(),
    )
    assert closest(result, "source", "ch_1")[::3] == ("bt_1", "tied")
    assert closest(result, "target", "bt_1")[::3] == ("ch_1", "tied")


def test_a_record_with_nothing_near_has_no_closest_candidate() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 5000}],
        [{"record_id": "bt_1", "amount_minor": 99_000, "day": 1}],
        AmountDatePass(),
    )
    assert closest(result, "source", "ch_1") == (None, None, None, None)
