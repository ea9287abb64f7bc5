"""The split pass: instalments and part payments through a shared reference; the group pass's
safeguards against one-record "groups"."""

from __future__ import annotations

from settler_pipeline.domain.matching import GroupPass, SplitPass, Tolerance
from tests.unit.test_matcher_support import links, only_match, reasons, run

INVOICE = [{"record_id": "ch_1", "amount_minor": 30000, "reference": "INV-000777"}]


def test_an_invoice_paid_in_three_bank_lines_naming_it_in_the_memo_matches_one_to_many() -> None:
    target = [
        {"record_id": "bt_1", "amount_minor": 10000, "description": "RE INV-000777 1/3", "day": 0},
        {"record_id": "bt_2", "amount_minor": 10000, "description": "Rechnung INV-000777 2/3", "day": 14},
        {"record_id": "bt_3", "amount_minor": 10000, "description": "INV-000777/3", "day": 28},
    ]
    match = only_match(run(INVOICE, target, SplitPass()))
    assert (match["match_type"], match["status"], match["rule"]) == (
        "one_to_many",
        "matched",
        "split_payment",
    )
    assert match["target_ids"] == ["bt_1", "bt_2", "bt_3"]
    assert match["amount_difference_minor"] == 0


def test_a_part_payment_is_proposed_with_the_open_amount_never_confirmed() -> None:
    target = [
        {"record_id": "bt_1", "amount_minor": 10000, "description": "INV-000777 1/3"},
        {"record_id": "bt_2", "amount_minor": 10000, "description": "INV-000777 2/3", "day": 10},
    ]
    match = only_match(run(INVOICE, target, SplitPass()))
    assert match["status"] == "proposed"
    assert match["amount_difference_minor"] == -10000
    assert "partial" in match["matched_fields"]
    assert not links(run(INVOICE, target, SplitPass(propose_partial=False)))


def test_parts_summing_above_the_amount_are_an_amount_mismatch() -> None:
    target = [
        {"record_id": "bt_1", "amount_minor": 20000, "description": "INV-000777"},
        {"record_id": "bt_2", "amount_minor": 20000, "description": "INV-000777"},
    ]
    result = run(INVOICE, target, SplitPass())
    assert not links(result)
    assert reasons(result)[("source", "ch_1")] == ("amount_mismatch", ["bt_1", "bt_2"])


def test_a_bank_line_naming_two_invoices_is_never_split_between_them() -> None:
    source = [*INVOICE, {"record_id": "ch_2", "amount_minor": 5000, "reference": "INV-000778"}]
    target = [
        {"record_id": "bt_1", "amount_minor": 15000, "description": "INV-000777 INV-000778"},
        {"record_id": "bt_2", "amount_minor": 15000, "description": "INV-000777"},
    ]
    assert not links(run(source, target, SplitPass()))


def test_parts_outside_the_instalment_window_block_the_split() -> None:
    target = [
        {"amount_minor": 15000, "description": "INV-000777", "day": 1},
        {"amount_minor": 15000, "description": "INV-000777", "day": 90},
    ]
    assert not links(run(INVOICE, target, SplitPass()))


def test_several_records_settled_by_one_line_naming_their_shared_reference_match_many_to_one() -> None:
    source = [
        {"record_id": "ch_1", "amount_minor": 1200, "reference": "ORDER-55501"},
        {"record_id": "ch_2", "amount_minor": 800, "reference": "ORDER-55501"},
    ]
    target = [{"record_id": "bt", "amount_minor": 2000, "description": "Order 55501 ACME", "day": 2}]
    match = only_match(run(source, target, SplitPass(strip_prefixes=["ORDER-", "ORDER"])))
    assert (match["match_type"], match["source_ids"]) == ("many_to_one", ["ch_1", "ch_2"])


def test_the_tolerance_applies_to_the_sum() -> None:
    target = [
        {"amount_minor": 14990, "description": "INV-000777"},
        {"amount_minor": 14990, "description": "INV-000777"},
    ]
    assert only_match(run(INVOICE, target, SplitPass(tolerance=Tolerance(absolute_minor=20))))["status"] == (
        "matched"
    )


def test_the_group_fallback_never_matches_a_one_record_group_by_amount() -> None:
    # The bank reference was mapped as the group key: each bank line is a "group" of one.
    source = [
        {"record_id": "ch_1", "amount_minor": 7900, "day": 0},
        {"record_id": "ch_2", "amount_minor": 7900, "day": 2},
    ]
    target = [{"record_id": "bt", "amount_minor": 7900, "group_key": "E2E-1", "day": 1}]
    assert not links(run(source, target, GroupPass(direction="one_to_many")))


def test_a_group_told_apart_from_another_by_dates_alone_is_only_proposed() -> None:
    source = [
        {"record_id": "a1", "amount_minor": 1000, "group_key": "po_A", "day": 0},
        {"record_id": "a2", "amount_minor": 1000, "group_key": "po_A", "day": 0},
        {"record_id": "b1", "amount_minor": 1500, "group_key": "po_B", "day": 3},
        {"record_id": "b2", "amount_minor": 500, "group_key": "po_B", "day": 3},
    ]
    target = [
        {"record_id": "bt_1", "amount_minor": 2000, "day": 1},
        {"record_id": "bt_2", "amount_minor": 2000, "day": 4},
    ]
    result = run(
        source, target, GroupPass(date_window=GroupPass().date_window.model_copy(update={"days_after": 5}))
    )
    assert links(result, "matched") == set()
    assert links(result, "proposed") == {(("a1", "a2"), ("bt_1",)), (("b1", "b2"), ("bt_2",))}
