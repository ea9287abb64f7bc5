"""The group pass: payouts (many-to-one) and split settlements (one-to-many)."""

from __future__ import annotations

from settler_pipeline.domain.matching import DateWindow, GroupPass, Tolerance
from tests.unit.test_matcher_support import links, only_match, reasons, run

PAYOUT = [
    {"record_id": "ch_1", "amount_minor": 1000, "group_key": "po_1AbC", "day": 0},
    {"record_id": "ch_2", "amount_minor": 2500, "group_key": "po_1AbC", "day": 1},
    {"record_id": "ch_3", "amount_minor": 500, "group_key": "po_1AbC", "day": 1},
]


def test_charges_sharing_a_payout_id_match_the_bank_line_quoting_it() -> None:
    result = run(
        PAYOUT, [{"record_id": "bt", "amount_minor": 4000, "reference": "PO_1ABC", "day": 3}], GroupPass()
    )
    match = only_match(result)
    assert (match["rule"], match["match_type"], match["confidence"]) == ("group_sum", "many_to_one", 0.95)
    assert match["source_ids"] == ["ch_1", "ch_2", "ch_3"]
    assert match["source_lines"] == [1, 2, 3]
    assert (match["source_amount_minor"], match["target_amount_minor"]) == (4000, 4000)
    assert match["matched_fields"] == ["group_key", "amount", "date"]
    assert match["date_difference_days"] == 2  # from the latest charge


def test_the_payout_id_may_be_only_in_the_bank_memo() -> None:
    target = [{"amount_minor": 4000, "description": "STRIPE PAYOUT po_1AbC", "day": 3}]
    assert only_match(run(PAYOUT, target, GroupPass()))["matched_fields"] == [
        "group_key",
        "description",
        "amount",
        "date",
    ]
    assert not links(run(PAYOUT, target, GroupPass(search_in_description=False, match_by_amount=False)))


def test_a_group_without_its_key_on_the_bank_line_matches_by_sum_and_date() -> None:
    target = [{"amount_minor": 4000, "description": "STRIPE TRANSFER", "day": 3}]
    assert only_match(run(PAYOUT, target, GroupPass()))["matched_fields"] == ["amount", "date"]
    assert not links(run(PAYOUT, target, GroupPass(match_by_amount=False)))


def test_the_window_counts_from_the_latest_record_of_the_group() -> None:
    window = GroupPass(date_window=DateWindow(days_before=0, days_after=2))
    assert links(run(PAYOUT, [{"amount_minor": 4000, "reference": "po_1abc", "day": 3}], window))
    late = run(PAYOUT, [{"record_id": "bt", "amount_minor": 4000, "reference": "po_1abc", "day": 4}], window)
    assert not links(late)
    assert reasons(late)[("source", "ch_2")] == ("date_mismatch", ["bt"])


def test_a_sum_outside_tolerance_is_an_amount_mismatch_for_every_record() -> None:
    result = run(
        PAYOUT, [{"record_id": "bt", "amount_minor": 3990, "reference": "po_1AbC", "day": 2}], GroupPass()
    )
    assert links(result) == set()
    assert reasons(result) == {
        ("source", "ch_1"): ("amount_mismatch", ["bt"]),
        ("source", "ch_2"): ("amount_mismatch", ["bt"]),
        ("source", "ch_3"): ("amount_mismatch", ["bt"]),
        ("target", "bt"): ("amount_mismatch", ["ch_1", "ch_2", "ch_3"]),
    }
    tolerant = run(
        PAYOUT,
        [{"amount_minor": 3990, "reference": "po_1AbC", "day": 2}],
        GroupPass(tolerance=Tolerance(absolute_minor=10)),
    )
    assert only_match(tolerant)["amount_difference_minor"] == -10


def test_groups_are_formed_per_currency() -> None:
    source = [
        {"record_id": "usd_1", "amount_minor": 100, "group_key": "po_9"},
        {"record_id": "usd_2", "amount_minor": 200, "group_key": "po_9"},
        {"record_id": "eur_1", "amount_minor": 700, "group_key": "po_9", "currency": "EUR"},
    ]
    target = [
        {"record_id": "bt_usd", "amount_minor": 300, "reference": "po_9"},
        {"record_id": "bt_eur", "amount_minor": 700, "reference": "po_9", "currency": "EUR"},
    ]
    result = run(source, target, GroupPass())
    assert links(result) == {(("usd_1", "usd_2"), ("bt_usd",)), (("eur_1",), ("bt_eur",))}
    assert set(result.matches["match_type"]) == {"many_to_one", "one_to_one"}


def test_one_source_settled_in_several_target_lines_matches_one_to_many() -> None:
    source = [{"record_id": "inv", "amount_minor": 9000, "reference": "INV-42"}]
    target = [
        {"record_id": "part_1", "amount_minor": 4000, "group_key": "INV-42", "day": 1},
        {"record_id": "part_2", "amount_minor": 5000, "group_key": "inv-42", "day": 2},
    ]
    match = only_match(run(source, target, GroupPass()))
    assert (match["match_type"], match["source_ids"], match["target_ids"]) == (
        "one_to_many",
        ["inv"],
        ["part_1", "part_2"],
    )
    assert match["date_difference_days"] == 2


def test_the_direction_option_restricts_the_pass() -> None:
    many = [{"amount_minor": 100, "group_key": "g"}, {"amount_minor": 200, "group_key": "g"}]
    one = [{"amount_minor": 300, "reference": "g"}]
    assert links(run(many, one, GroupPass(direction="many_to_one")))
    assert not links(run(many, one, GroupPass(direction="one_to_many")))
    assert links(run(one, many, GroupPass(direction="one_to_many")))
    assert not links(run(one, many, GroupPass(direction="many_to_one")))


def test_two_bank_lines_quoting_the_same_payout_are_ambiguous() -> None:
    result = run(
        PAYOUT,
        [
            {"record_id": "bt_a", "amount_minor": 4000, "reference": "po_1AbC", "day": 2},
            {"record_id": "bt_b", "amount_minor": 4000, "reference": "po_1AbC", "day": 2},
        ],
        GroupPass(),
    )
    assert links(result) == set()
    assert reasons(result)[("source", "ch_1")] == ("ambiguous", ["bt_a", "bt_b"])
    assert reasons(result)[("target", "bt_a")] == ("ambiguous", ["ch_1", "ch_2", "ch_3"])
