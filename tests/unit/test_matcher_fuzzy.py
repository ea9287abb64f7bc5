"""The fuzzy pass: text similarity that only ever proposes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from settler_pipeline.domain.matching import AmountDatePass, FuzzyPass, ReferencePass, Tolerance, fuzzy
from tests.unit.test_matcher_support import links, only_match, reasons, run

SOURCE = [
    {
        "record_id": "ch",
        "amount_minor": 4321,
        "description": "Invoice 88 widgets",
        "counterparty": "Jane Smith",
    }
]
BANK = [{"record_id": "bt", "amount_minor": 4300, "description": "TRANSFER FROM JANE SMITH", "day": 1}]


def test_similar_text_within_tolerance_is_proposed_never_matched() -> None:
    match = only_match(run(SOURCE, BANK, FuzzyPass()))
    assert (match["rule"], match["status"]) == ("fuzzy_text", "proposed")
    assert match["confidence"] == 0.8  # 0.8 x similarity 1.0: every word of the name is in the memo
    assert match["matched_fields"] == ["text", "amount", "date"]


def test_fuzzy_passes_are_proposals_in_the_accounting() -> None:
    accounting = run(SOURCE, BANK, FuzzyPass()).accounting()
    assert accounting["source"]["proposed"] == 1
    assert accounting["source"]["matched"] == 0


def test_text_below_the_minimum_score_is_not_proposed() -> None:
    bank = [{"amount_minor": 4300, "description": "CARD PAYMENT ACME", "day": 1}]
    assert not links(run(SOURCE, bank, FuzzyPass()))
    assert links(run(SOURCE, bank, FuzzyPass(min_score=0.0)))


def test_amounts_outside_the_fuzzy_tolerance_are_not_candidates() -> None:
    strict = FuzzyPass(tolerance=Tolerance(percent=Decimal("0.1")))
    assert not links(run(SOURCE, BANK, strict))


def test_currencies_must_agree() -> None:
    bank = [{**BANK[0], "currency": "EUR"}]
    assert not links(run(SOURCE, bank, FuzzyPass()))


def test_only_the_configured_fields_are_compared() -> None:
    assert not links(run(SOURCE, BANK, FuzzyPass(fields=["description"])))
    assert links(run(SOURCE, BANK, FuzzyPass(fields=["counterparty", "description"])))


def test_equally_similar_candidates_are_ambiguous_not_proposed() -> None:
    bank = [BANK[0], {**BANK[0], "record_id": "bt2"}]
    result = run(SOURCE, bank, FuzzyPass())
    assert not links(result)
    assert reasons(result)[("source", "ch")] == ("ambiguous", ["bt", "bt2"])


def test_fuzzy_only_sees_what_earlier_passes_left() -> None:
    source = [*SOURCE, {"record_id": "ch2", "amount_minor": 4300, "reference": "INV-1"}]
    bank = [{**BANK[0], "reference": "INV-1"}]
    result = run(source, bank, ReferencePass(), AmountDatePass(), FuzzyPass())
    assert links(result, "matched") == {(("ch2",), ("bt",))}
    assert links(result, "proposed") == set()


def test_large_sides_work_out_their_texts_after_the_search_with_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bank = [BANK[0], {**BANK[0], "record_id": "bt2", "description": "CARD PAYMENT ACME"}]
    overlapped = run(SOURCE, bank, FuzzyPass())
    monkeypatch.setattr(fuzzy, "OVERLAP_RECORDS", 0)
    in_turn = run(SOURCE, bank, FuzzyPass())
    assert links(in_turn) == links(overlapped) and links(in_turn)
    assert reasons(in_turn) == reasons(overlapped)
