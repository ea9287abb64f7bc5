"""The amount + date pass: candidates, mutual unique best, ties, date windows and near misses."""

from __future__ import annotations

from datetime import UTC, datetime

from settler_pipeline.domain.matching import AmountDatePass, DateWindow, ReferencePass, Tolerance
from tests.unit.test_matcher_support import links, only_match, reasons, run

AMOUNT_DATE = AmountDatePass()


def test_a_unique_amount_within_the_window_matches() -> None:
    result = run([{"amount_minor": 4200}], [{"amount_minor": 4200, "day": 2}], AMOUNT_DATE)
    match = only_match(result)
    assert (match["rule"], match["status"], match["matched_fields"]) == (
        "amount_date",
        "matched",
        ["amount", "date"],
    )
    assert match["date_difference_days"] == 2
    assert match["confidence"] == 0.86  # 0.90 - 2 days * 0.02


def test_confidence_drops_with_the_amount_difference() -> None:
    result = run(
        [{"amount_minor": 1000}],
        [{"amount_minor": 990}],
        AmountDatePass(tolerance=Tolerance(absolute_minor=20)),
    )
    assert only_match(result)["confidence"] == 0.9 - 0.05 * 10 / 20


def test_the_closer_date_wins_and_the_other_target_stays_unmatched() -> None:
    result = run(
        [{"record_id": "ch", "amount_minor": 4200}],
        [
            {"record_id": "later", "amount_minor": 4200, "day": 2},
            {"record_id": "same_day", "amount_minor": 4200},
        ],
        AMOUNT_DATE,
    )
    assert links(result) == {(("ch",), ("same_day",))}
    assert reasons(result) == {("target", "later"): ("missing_transaction", [])}


def test_the_closer_amount_wins_before_the_closer_date() -> None:
    result = run(
        [{"record_id": "ch", "amount_minor": 1000}],
        [
            {"record_id": "exact_late", "amount_minor": 1000, "day": 3},
            {"record_id": "close_same_day", "amount_minor": 999},
        ],
        AmountDatePass(tolerance=Tolerance(absolute_minor=5)),
    )
    assert links(result) == {(("ch",), ("exact_late",))}


def test_two_identical_sources_and_one_target_are_all_ambiguous() -> None:
    result = run(
        [{"record_id": "a", "amount_minor": 4200}, {"record_id": "b", "amount_minor": 4200}],
        [{"record_id": "t", "amount_minor": 4200}],
        AMOUNT_DATE,
    )
    assert links(result) == set()
    assert reasons(result) == {
        ("source", "a"): ("ambiguous", ["t"]),
        ("source", "b"): ("ambiguous", ["t"]),
        ("target", "t"): ("ambiguous", ["a", "b"]),
    }


def test_two_identical_sources_and_two_identical_targets_are_never_paired_by_guess() -> None:
    result = run(
        [{"record_id": "a", "amount_minor": 4200}, {"record_id": "b", "amount_minor": 4200}],
        [{"record_id": "x", "amount_minor": 4200}, {"record_id": "y", "amount_minor": 4200}],
        AMOUNT_DATE,
    )
    assert links(result) == set()
    assert {reason for reason, _ in reasons(result).values()} == {"ambiguous"}
    assert reasons(result)[("target", "x")] == ("ambiguous", ["a", "b"])


def test_a_chain_of_preferences_settles_without_guessing() -> None:
    # a prefers x (same day) but x prefers b (also same day, closer amount); once b-x is taken,
    # a's remaining candidate y is mutual best.
    result = run(
        [{"record_id": "a", "amount_minor": 1000}, {"record_id": "b", "amount_minor": 1001}],
        [{"record_id": "x", "amount_minor": 1001}, {"record_id": "y", "amount_minor": 1000, "day": 1}],
        AmountDatePass(tolerance=Tolerance(absolute_minor=5)),
    )
    assert links(result) == {(("b",), ("x",)), (("a",), ("y",))}


def test_currencies_must_agree_and_a_same_amount_in_another_currency_is_reported() -> None:
    result = run(
        [{"record_id": "ch", "amount_minor": 4200, "currency": "EUR"}],
        [{"record_id": "bt", "amount_minor": 4200, "currency": "USD"}],
        AMOUNT_DATE,
    )
    assert links(result) == set()
    assert reasons(result) == {
        ("source", "ch"): ("currency_mismatch", ["bt"]),
        ("target", "bt"): ("currency_mismatch", ["ch"]),
    }


def test_a_same_amount_just_outside_the_window_is_a_date_mismatch() -> None:
    result = run(
        [{"record_id": "ch", "amount_minor": 4200}],
        [{"record_id": "bt", "amount_minor": 4200, "day": 6}],
        AmountDatePass(date_window=DateWindow(days_before=0, days_after=3), mismatch_search_days=7),
    )
    assert reasons(result)[("source", "ch")] == ("date_mismatch", ["bt"])


def test_near_misses_beyond_the_search_days_are_not_reported() -> None:
    result = run(
        [{"record_id": "ch", "amount_minor": 4200}],
        [{"record_id": "bt", "amount_minor": 4200, "day": 20}],
        AmountDatePass(mismatch_search_days=7),
    )
    assert reasons(result)[("source", "ch")] == ("missing_settlement", [])
    disabled = run(
        [{"record_id": "ch", "amount_minor": 4200}],
        [{"record_id": "bt", "amount_minor": 4200, "day": 5}],
        AmountDatePass(mismatch_search_days=0),
    )
    assert reasons(disabled)[("source", "ch")] == ("missing_settlement", [])


def test_the_target_may_lag_up_to_days_after_but_no_more() -> None:
    window = AmountDatePass(date_window=DateWindow(days_before=0, days_after=3), mismatch_search_days=0)
    assert links(run([{"amount_minor": 10}], [{"amount_minor": 10, "day": 3}], window))
    assert not links(run([{"amount_minor": 10}], [{"amount_minor": 10, "day": 4}], window))


def test_the_target_may_lead_only_by_days_before() -> None:
    source = [{"amount_minor": 10, "day": 5}]
    early = [{"amount_minor": 10, "day": 4}]
    no_lead = AmountDatePass(date_window=DateWindow(days_before=0, days_after=3), mismatch_search_days=0)
    one_day = AmountDatePass(date_window=DateWindow(days_before=1, days_after=3), mismatch_search_days=0)
    assert not links(run(source, early, no_lead))
    assert links(run(source, early, one_day))


def test_days_are_utc_calendar_days_not_24_hour_spans() -> None:
    source = [{"amount_minor": 10, "at": datetime(2026, 11, 1, 23, 59, tzinfo=UTC)}]
    target = [{"amount_minor": 10, "at": datetime(2026, 11, 2, 0, 1, tzinfo=UTC)}]
    same_day_only = AmountDatePass(
        date_window=DateWindow(days_before=0, days_after=0), mismatch_search_days=0
    )
    assert not links(run(source, target, same_day_only))
    assert only_match(run(source, target, AMOUNT_DATE))["date_difference_days"] == 1


def test_a_source_with_more_candidates_than_the_cap_is_ambiguous() -> None:
    source = [{"record_id": "ch", "amount_minor": 4200}]
    target = [{"record_id": f"bt{i}", "amount_minor": 4200, "day": i} for i in range(3)]
    assert links(run(source, target, AmountDatePass(max_candidates=3))) == {(("ch",), ("bt0",))}
    crowded = run(source, target, AmountDatePass(max_candidates=2, mismatch_search_days=0))
    assert links(crowded) == set()
    assert reasons(crowded)[("source", "ch")] == ("ambiguous", [])


def test_records_with_conflicting_references_are_not_paired_on_amount() -> None:
    source = [{"amount_minor": 4200, "reference": "INV-7"}]
    assert not links(run(source, [{"amount_minor": 4200, "reference": "INV-8"}], AMOUNT_DATE))
    assert links(run(source, [{"amount_minor": 4200, "reference": "7"}], AMOUNT_DATE))
    assert links(run(source, [{"amount_minor": 4200}], AMOUNT_DATE))
    lenient = AmountDatePass(reject_conflicting_references=False)
    assert links(run(source, [{"amount_minor": 4200, "reference": "INV-8"}], lenient))


def test_refunds_match_negative_amounts() -> None:
    result = run([{"amount_minor": -1500}], [{"amount_minor": -1500, "day": 1}], AMOUNT_DATE)
    assert only_match(result)["source_amount_minor"] == -1500


def test_a_record_tied_by_reference_to_a_free_counterpart_is_not_repaired_on_amount() -> None:
    source = [{"record_id": "ch", "amount_minor": 1499, "reference": "INV-1"}]
    target = [
        {"record_id": "short_paid", "amount_minor": 700, "reference": "INV-1"},
        {"record_id": "stray", "amount_minor": 1499},
    ]
    held = run(source, target, ReferencePass(), AMOUNT_DATE)
    assert links(held) == set()
    assert reasons(held)[("source", "ch")] == ("amount_mismatch", ["short_paid"])
    released = run(source, target, ReferencePass(), AmountDatePass(hold_near_misses=False))
    assert links(released) == {(("ch",), ("stray",))}


def test_a_pair_told_apart_only_by_dates_is_proposed_not_confirmed() -> None:
    source = [{"record_id": "ch", "amount_minor": 4200}]
    target = [
        {"record_id": "same_day", "amount_minor": 4200},
        {"record_id": "later", "amount_minor": 4200, "day": 2},
    ]
    proposed = only_match(run(source, target, AMOUNT_DATE))
    assert (proposed["target_ids"], proposed["status"]) == (["same_day"], "proposed")
    confirmed = only_match(run(source, target, AmountDatePass(propose_when_dates_decide=False)))
    assert (confirmed["target_ids"], confirmed["status"]) == (["same_day"], "matched")


def test_a_pair_whose_competitor_differs_in_amount_is_confirmed() -> None:
    result = run(
        [{"record_id": "ch", "amount_minor": 1000}],
        [{"record_id": "exact", "amount_minor": 1000, "day": 2}, {"record_id": "fee", "amount_minor": 995}],
        AmountDatePass(tolerance=Tolerance(absolute_minor=10)),
    )
    assert only_match(result)["status"] == "matched"
