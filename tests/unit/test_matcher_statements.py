"""Real bank statements: placeholder references, references inside punctuated memos, several
references per record."""

from __future__ import annotations

import polars as pl
import pytest

from settler_pipeline.domain.matching import AmountDatePass, FuzzyPass, ReferencePass
from tests.unit.test_matcher_support import links, records, run


@pytest.mark.parametrize(
    "placeholder", ["NOTPROVIDED", "notprovided", "NONREF", "N/A", "n.a.", "-", "0", "000"]
)
def test_a_placeholder_reference_does_not_block_an_amount_and_date_match(placeholder: str) -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1234, "reference": "INV-000123"}],
        [{"record_id": "bt_1", "amount_minor": 1234, "reference": placeholder, "day": 1}],
        AmountDatePass(),
    )
    assert links(result, "matched") == {(("ch_1",), ("bt_1",))}


def test_placeholders_on_both_sides_never_match_by_reference() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "NOTPROVIDED"}],
        [{"amount_minor": 2000, "reference": "NOTPROVIDED"}],
        ReferencePass(),
    )
    assert links(result) == set()
    assert set(result.unmatched["reason"]) == {"missing_settlement", "missing_transaction"}


def test_a_real_reference_still_conflicts() -> None:
    result = run(
        [{"amount_minor": 1234, "reference": "INV-000123"}],
        [{"amount_minor": 1234, "reference": "INV-000999"}],
        AmountDatePass(),
    )
    assert links(result) == set()


@pytest.mark.parametrize(
    "memo",
    [
        "RE/INV-000123/2026",
        "Rechnungsnr.INV-000123",
        "SVWZ+RE:INV-000123;KREF+X",
        "ACME GMBH,INV-000123,DANKE",
        "Rechnung 000123/2026",
    ],
)
def test_references_are_found_inside_punctuated_memo_tokens(memo: str) -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "description": memo}],
        ReferencePass(),
    )
    assert links(result, "matched") == {(("r1",), ("r1",))}


def test_a_processor_id_joined_to_a_name_by_a_slash_is_found() -> None:
    result = run(
        [{"record_id": "py_123abc", "amount_minor": 1000, "reference": "py_123abc"}],
        [{"amount_minor": 1000, "description": "py_123abc/ACME"}],
        ReferencePass(),
    )
    assert links(result) == {(("py_123abc",), ("r1",))}


def test_any_of_several_references_of_a_record_matches() -> None:
    source = records(
        {"record_id": "ch_A1", "amount_minor": 7900, "reference": "INV-000001", "references": ["ch_A1"]},
        {"record_id": "ch_B2", "amount_minor": 7900, "reference": "INV-000002", "references": ["ch_B2"]},
    )
    target = records(
        {"record_id": "bt_1", "amount_minor": 7900, "description": "CARD ch_B2 ACME"},
        {"record_id": "bt_2", "amount_minor": 7900, "reference": "INV-000001"},
    )
    result = run(source, target, ReferencePass())
    assert links(result, "matched") == {(("ch_A1",), ("bt_2",)), (("ch_B2",), ("bt_1",))}


def test_a_second_reference_that_agrees_avoids_a_conflict() -> None:
    source = records({"amount_minor": 500, "reference": "INV-000001", "references": ["E2E-77"]})
    target = records({"amount_minor": 500, "reference": "E2E-77"})
    assert links(run(source, target, AmountDatePass())) == {(("r1",), ("r1",))}


def test_placeholders_inside_the_reference_list_are_dropped() -> None:
    source = records({"amount_minor": 500, "reference": "INV-000001", "references": ["NOTPROVIDED"]})
    target = records({"amount_minor": 500, "references": ["NOTPROVIDED", None]})
    result = run(source, target, AmountDatePass())
    assert links(result) == {(("r1",), ("r1",))}


def test_frames_without_a_references_column_are_accepted() -> None:
    source = records({"amount_minor": 500, "reference": "INV-000001"}).drop("references")
    target = records({"amount_minor": 500, "reference": "INV-000001"}).drop("references")
    assert links(run(source, target, ReferencePass())) == {(("r1",), ("r1",))}
    assert isinstance(source, pl.DataFrame)


def test_fuzzy_text_never_proposes_records_whose_references_conflict() -> None:
    source = [{"amount_minor": 9203, "reference": "INV-047078", "counterparty": "Ravi Hill"}]
    target = [{"amount_minor": 9138, "reference": "INV-9383500", "description": "PAYMENT FROM RAVI HILL"}]
    assert links(run(source, target, FuzzyPass())) == set()
    assert links(run(source, target, FuzzyPass(reject_conflicting_references=False))) == {(("r1",), ("r1",))}
