"""The reference pass: normalised references, memo search, near misses and ties."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.matching import DateWindow, ReferencePass, Tolerance, reference
from tests.profiles import examples
from tests.unit.test_matcher_support import links, only_match, reasons, run

REF = ReferencePass()


def test_equal_references_match_with_full_confidence() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-000123"}],
        [{"record_id": "bt_1", "amount_minor": 1000, "reference": "INV-000123", "day": 1}],
        REF,
    )
    match = only_match(result)
    assert (match["rule"], match["status"], match["match_type"]) == ("reference", "matched", "one_to_one")
    assert match["confidence"] == 1.0
    assert match["matched_fields"] == ["reference", "amount", "date"]
    assert (match["source_ids"], match["target_ids"]) == (["ch_1"], ["bt_1"])
    assert match["date_difference_days"] == 1
    assert result.unmatched.height == 0


@pytest.mark.parametrize(
    "bank_reference",
    ["inv-000123", "INV 000123", "000123", "REF-000123", "  INV-000123 ", "inv000123", "I N V-000123"],
)
def test_case_whitespace_and_configured_prefixes_are_normalised_away(bank_reference: str) -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "reference": bank_reference}],
        REF,
    )
    assert links(result) == {(("r1",), ("r1",))}


def test_leading_zeros_are_significant() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "reference": "INV-123"}],
        REF,
    )
    assert links(result) == set()
    assert reasons(result) == {
        ("source", "r1"): ("missing_settlement", []),
        ("target", "r1"): ("missing_transaction", []),
    }


def test_prefixes_that_are_not_configured_are_kept() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "reference": "000123"}],
        ReferencePass(strip_prefixes=[]),
    )
    assert links(result) == set()


def test_the_longest_matching_prefix_is_removed() -> None:
    # With "INV" tried first, "INV-7" would normalise to "-7" and miss "INV7" -> "7".
    result = run(
        [{"amount_minor": 1000, "reference": "INV-7"}],
        [{"amount_minor": 1000, "reference": "inv7"}],
        ReferencePass(strip_prefixes=["INV", "INV-"]),
    )
    assert links(result) == {(("r1",), ("r1",))}


def test_reference_found_in_the_target_memo_matches_with_lower_confidence() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "description": "Payment INV000123 thanks"}],
        REF,
    )
    match = only_match(result)
    assert match["confidence"] == 0.97
    assert match["matched_fields"] == ["description", "amount", "date"]


def test_reference_split_by_a_space_in_the_memo_is_still_found() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "description": "TRANSFER REF INV 000123 ACME"}],
        REF,
    )
    assert links(result) == {(("r1",), ("r1",))}


def test_memo_search_can_be_switched_off() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-000123"}],
        [{"amount_minor": 1000, "description": "Payment INV-000123 thanks"}],
        ReferencePass(search_in_description=False),
    )
    assert links(result) == set()


def test_memo_tokens_shorter_than_the_minimum_are_ignored() -> None:
    source = [{"amount_minor": 1000, "reference": "77"}]
    target = [{"amount_minor": 1000, "description": "Payment 77 thanks"}]
    assert links(run(source, target, ReferencePass(min_token_length=4))) == set()
    assert links(run(source, target, ReferencePass(min_token_length=2))) == {(("r1",), ("r1",))}


def test_the_reference_field_is_preferred_over_a_memo_mention() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"}],
        [
            {"record_id": "memo", "amount_minor": 1000, "description": "re INV-1"},
            {"record_id": "field", "amount_minor": 1000, "reference": "INV-1"},
        ],
        REF,
    )
    assert links(result) == {(("ch_1",), ("field",))}


def test_amount_outside_tolerance_is_an_amount_mismatch_on_both_sides() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"}],
        [{"record_id": "bt_1", "amount_minor": 990, "reference": "INV-1"}],
        REF,
    )
    assert links(result) == set()
    assert reasons(result) == {
        ("source", "ch_1"): ("amount_mismatch", ["bt_1"]),
        ("target", "bt_1"): ("amount_mismatch", ["ch_1"]),
    }


def test_amount_within_the_pass_tolerance_matches() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-1"}],
        [{"amount_minor": 990, "reference": "INV-1"}],
        ReferencePass(tolerance=Tolerance(absolute_minor=10)),
    )
    assert only_match(result)["amount_difference_minor"] == -10


def test_date_outside_the_window_is_a_date_mismatch() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"}],
        [{"record_id": "bt_1", "amount_minor": 1000, "reference": "INV-1", "day": 8}],
        ReferencePass(date_window=DateWindow(days_before=0, days_after=7)),
    )
    assert reasons(result)[("source", "ch_1")] == ("date_mismatch", ["bt_1"])


def test_other_currency_is_a_currency_mismatch_even_when_amount_and_date_fail_too() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1", "currency": "EUR"}],
        [{"record_id": "bt_1", "amount_minor": 1170, "reference": "INV-1", "currency": "USD", "day": 30}],
        REF,
    )
    assert links(result) == set()
    assert reasons(result)[("source", "ch_1")] == ("currency_mismatch", ["bt_1"])
    assert reasons(result)[("target", "bt_1")] == ("currency_mismatch", ["ch_1"])


def test_two_equally_fitting_targets_for_one_reference_are_ambiguous() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"}],
        [
            {"record_id": "bt_1", "amount_minor": 1000, "reference": "INV-1"},
            {"record_id": "bt_2", "amount_minor": 1000, "reference": "inv-1"},
        ],
        REF,
    )
    assert links(result) == set()
    assert reasons(result) == {
        ("source", "ch_1"): ("ambiguous", ["bt_1", "bt_2"]),
        ("target", "bt_1"): ("ambiguous", ["ch_1"]),
        ("target", "bt_2"): ("ambiguous", ["ch_1"]),
    }


def test_among_fitting_targets_the_closer_amount_wins() -> None:
    result = run(
        [{"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"}],
        [
            {"record_id": "bt_far", "amount_minor": 995, "reference": "INV-1"},
            {"record_id": "bt_near", "amount_minor": 999, "reference": "INV-1"},
        ],
        ReferencePass(tolerance=Tolerance(absolute_minor=10)),
    )
    assert links(result) == {(("ch_1",), ("bt_near",))}
    # The other target's near miss pointed at a record that is now matched: it explains nothing.
    assert reasons(result) == {("target", "bt_far"): ("missing_transaction", [])}


def test_a_pass_without_auto_confirm_only_proposes() -> None:
    result = run(
        [{"amount_minor": 1000, "reference": "INV-1"}],
        [{"amount_minor": 1000, "reference": "INV-1"}],
        ReferencePass(auto_confirm=False),
    )
    assert only_match(result)["status"] == "proposed"


def test_percent_tolerance_on_a_reference_pass() -> None:
    tolerance = Tolerance(percent=Decimal("1.5"))
    source = [{"amount_minor": 10_000, "reference": "INV-1"}]
    assert links(
        run(source, [{"amount_minor": 9_850, "reference": "INV-1"}], ReferencePass(tolerance=tolerance))
    )
    assert not links(
        run(source, [{"amount_minor": 9_849, "reference": "INV-1"}], ReferencePass(tolerance=tolerance))
    )


def test_a_reference_shared_by_too_many_records_identifies_nothing() -> None:
    source = [{"record_id": f"ch_{i}", "amount_minor": 100 + i, "reference": "BATCH-7"} for i in range(3)]
    target = [{"record_id": f"bt_{i}", "amount_minor": 100 + i, "reference": "BATCH-7"} for i in range(3)]
    assert len(links(run(source, target, ReferencePass(max_candidates=3)))) == 3
    assert links(run(source, target, ReferencePass(max_candidates=2))) == set()


memo_row = st.fixed_dictionaries(
    {
        "amount_minor": st.sampled_from([1000, 1001, 2000]),
        "day": st.integers(0, 4),
        "reference": st.sampled_from([None, "INV-000123", "INV-000124", "po_7"]),
        "description": st.sampled_from(
            [None, "Payment INV-000123 thanks", "INV-000124/INV-000123", "PO_7 payout", "thanks"]
        ),
    }
)


@settings(max_examples=examples(60), deadline=None)
@given(
    source=st.lists(memo_row, max_size=10),
    target=st.lists(memo_row, max_size=10),
    at_once=st.integers(1, 4),
)
def test_target_keys_found_a_few_records_at_a_time_match_the_same(
    source: list[dict[str, Any]], target: list[dict[str, Any]], at_once: int
) -> None:
    whole = run(source, target, REF)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "TARGETS_AT_ONCE", at_once)
        sliced = run(source, target, REF)
    assert sliced.matches.equals(whole.matches)
    assert sliced.unmatched.equals(whole.unmatched)
