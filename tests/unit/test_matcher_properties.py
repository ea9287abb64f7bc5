"""Properties of the matcher on arbitrary small inputs full of collisions (hypothesis)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.matching import (
    UNMATCHED_REASONS,
    AmountDatePass,
    DateWindow,
    FuzzyPass,
    GroupPass,
    MatchConfig,
    MatchResult,
    ReferencePass,
    SplitPass,
    Tolerance,
    match_records,
)
from settler_pipeline.domain.matching.explain import REJECTIONS
from tests.profiles import examples
from tests.unit.test_matcher_support import BASE_TIME, records

row = st.fixed_dictionaries(
    {
        "record_id": st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", None]),
        "amount_minor": st.sampled_from([100, 101, 200, 300, 1000, -50]),
        "currency": st.sampled_from(["USD", "EUR"]),
        "at": st.integers(0, 5).map(lambda d: BASE_TIME + timedelta(days=d)),
        "reference": st.sampled_from([None, "INV-1", "inv 1", "INV-2", "po_1", "NOTPROVIDED"]),
        "references": st.sampled_from([None, [], ["ch_9"], ["INV-2", "N/A"]]),
        "description": st.sampled_from(
            [None, "Payment INV-1 thanks", "JANE SMITH", "STRIPE PAYOUT po_1", "RE/INV-2/2026", "ch_9/BOB"]
        ),
        "counterparty": st.sampled_from([None, "Jane Smith", "Bob"]),
        "group_key": st.sampled_from([None, "po_1", "INV-2"]),
        "in_range": st.booleans(),
    }
)
tolerance = st.builds(
    Tolerance,
    absolute_minor=st.sampled_from([0, 1, 100]),
    percent=st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(10)]),
    percent_of=st.sampled_from(["source", "target"]),
    combine=st.sampled_from(["either", "both"]),
)
window = st.builds(DateWindow, days_before=st.integers(0, 2), days_after=st.integers(0, 3))
config = st.builds(
    lambda tol, win, order, cap: MatchConfig(
        passes=[
            [
                ReferencePass(tolerance=tol, date_window=win, max_candidates=cap),
                AmountDatePass(tolerance=tol, date_window=win, max_candidates=cap),
                GroupPass(tolerance=tol, date_window=win, max_candidates=cap),
                FuzzyPass(tolerance=tol, date_window=win, min_score=0.5, max_candidates=cap),
                SplitPass(tolerance=tol, date_window=win, max_parts=max(cap, 2)),
            ][i]
            for i in order
        ]
    ),
    tolerance,
    window,
    st.permutations([0, 1, 2, 3, 4]),
    st.sampled_from([1, 3, 50]),
)


def _frames(
    source_rows: list[dict[str, Any]], target_rows: list[dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    return records(*source_rows), records(*target_rows)


def _check_buckets(result: MatchResult, side: str, frame: pl.DataFrame) -> None:
    lines = f"{side}_lines"
    in_matches = result.matches[lines].explode().to_list()
    assert len(in_matches) == len(set(in_matches)), "a record is used by two matches"
    unmatched = result.unmatched.filter(pl.col("side") == side)["line_number"].to_list()
    duplicates = result.duplicates.filter(pl.col("side") == side)["line_number"].to_list()
    everything = in_matches + unmatched + duplicates
    assert sorted(everything) == sorted(frame["line_number"].to_list()), "a record is in no or two buckets"
    counts = result.accounting()[side]
    assert (
        counts["input"] == counts["matched"] + counts["proposed"] + counts["unmatched"] + counts["duplicate"]
    )


@settings(max_examples=examples(100), deadline=None)
@given(
    source_rows=st.lists(row, max_size=12),
    target_rows=st.lists(row, max_size=12),
    match_config=config,
)
def test_every_record_lands_in_exactly_one_bucket_and_no_record_is_matched_twice(
    source_rows: list[dict[str, Any]], target_rows: list[dict[str, Any]], match_config: MatchConfig
) -> None:
    source, target = _frames(source_rows, target_rows)
    result = match_records(source, target, match_config, run_id="prop")
    _check_buckets(result, "source", source)
    _check_buckets(result, "target", target)

    currency = {("source", r["line_number"]): r["currency"] for r in source.iter_rows(named=True)}
    currency |= {("target", r["line_number"]): r["currency"] for r in target.iter_rows(named=True)}
    for match in result.matches.iter_rows(named=True):
        sides = [("source", line) for line in match["source_lines"]] + [
            ("target", line) for line in match["target_lines"]
        ]
        assert {currency[key] for key in sides} == {match["currency"]}
        assert match["amount_difference_minor"] == match["target_amount_minor"] - match["source_amount_minor"]
        assert 0.0 <= match["confidence"] <= 1.0
        if match["rule"] == "fuzzy_text":
            assert match["status"] == "proposed"
    assert set(result.unmatched["reason"]) <= set(UNMATCHED_REASONS)
    # The closest candidate of an unmatched record is a record of the other side, with a rejection.
    ids = {"source": set(source["record_id"]), "target": set(target["record_id"])}
    for unmatched in result.unmatched.iter_rows(named=True):
        other = "target" if unmatched["side"] == "source" else "source"
        named = unmatched["closest_rejection"] is not None
        assert named == (unmatched["closest_amount_minor"] is not None)
        assert unmatched["closest_rejection"] in (None, *REJECTIONS)
        if named and unmatched["closest_id"] is not None:
            assert unmatched["closest_id"] in ids[other]
    margin = set(source.filter(~pl.col("in_range"))["line_number"])
    for unmatched in result.unmatched.filter(pl.col("side") == "source").iter_rows(named=True):
        assert (unmatched["reason"] == "outside_range") == (unmatched["line_number"] in margin)


@settings(max_examples=examples(50), deadline=None)
@given(
    source_rows=st.lists(row, max_size=10),
    target_rows=st.lists(row, max_size=10),
    match_config=config,
    seed=st.integers(0, 1000),
)
def test_row_order_of_the_inputs_does_not_change_the_result(
    source_rows: list[dict[str, Any]], target_rows: list[dict[str, Any]], match_config: MatchConfig, seed: int
) -> None:
    source, target = _frames(source_rows, target_rows)
    first = match_records(source, target, match_config, run_id="prop")
    shuffled = match_records(
        source.sample(fraction=1.0, shuffle=True, seed=seed),
        target.sample(fraction=1.0, shuffle=True, seed=seed + 1),
        match_config,
        run_id="prop",
    )
    assert first.matches.equals(shuffled.matches)
    assert first.unmatched.equals(shuffled.unmatched)
    assert first.duplicates.equals(shuffled.duplicates)


@settings(max_examples=examples(100), deadline=None)
@given(
    source_rows=st.lists(row, max_size=12),
    target_rows=st.lists(row, max_size=12),
    match_config=config,
)
def test_an_item_is_the_runs_when_one_of_its_records_is_in_range_else_its_records_are_outside_the_range(
    source_rows: list[dict[str, Any]], target_rows: list[dict[str, Any]], match_config: MatchConfig
) -> None:
    source, target = _frames(source_rows, target_rows)
    everything = match_records(source, target, match_config, run_id="prop", keep_margin_items=True)
    reported = match_records(source, target, match_config, run_id="prop")
    margin = {
        side: set(f.filter(~pl.col("in_range"))["line_number"])
        for side, f in (("source", source), ("target", target))
    }

    def own(lines: dict[str, list[int]]) -> bool:
        return any(line not in margin[side] for side, side_lines in lines.items() for line in side_lines)

    outside: set[tuple[str, int]] = set()
    for match in everything.matches.iter_rows(named=True):
        lines = {"source": match["source_lines"], "target": match["target_lines"]}
        if not own(lines):
            outside |= {(side, line) for side, side_lines in lines.items() for line in side_lines}
    # The pairings are the same: margin changes what is reported, never what is paired.
    assert reported.matches.equals(
        everything.matches.filter(
            pl.col("match_id").is_in(
                [
                    m["match_id"]
                    for m in everything.matches.iter_rows(named=True)
                    if own({"source": m["source_lines"], "target": m["target_lines"]})
                ]
            )
        )
    )
    for dup in everything.duplicates.iter_rows(named=True):
        group = [
            d
            for d in everything.duplicates.iter_rows(named=True)
            if (d["side"], d["first_line_number"]) == (dup["side"], dup["first_line_number"])
        ]
        occurrences = [dup["first_line_number"], *(d["line_number"] for d in group)]
        if not own({dup["side"]: occurrences}):
            outside.add((dup["side"], dup["line_number"]))
    kept_dups = {(d["side"], d["line_number"]) for d in reported.duplicates.iter_rows(named=True)}
    assert (
        kept_dups
        == {(d["side"], d["line_number"]) for d in everything.duplicates.iter_rows(named=True)} - outside
    )
    was_unmatched = {(u["side"], u["line_number"]) for u in everything.unmatched.iter_rows(named=True)}
    now = {(u["side"], u["line_number"]): u["reason"] for u in reported.unmatched.iter_rows(named=True)}
    assert set(now) == was_unmatched | outside
    assert all(now[key] == "outside_range" for key in outside)
    _check_buckets(reported, "source", source)
    _check_buckets(reported, "target", target)
    # The rate's figures: the run's own source records in its matches.
    in_range = {
        status: sum(
            line not in margin["source"]
            for m in reported.matches.filter(pl.col("status") == status).iter_rows(named=True)
            for line in m["source_lines"]
        )
        for status in ("matched", "proposed")
    }
    assert reported.source_in_range == in_range
