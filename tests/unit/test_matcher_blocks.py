"""Block-wise matching: planned blocks, and properties against whole matching (hypothesis)."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.matching import MatchConfig, MatchResult, candidates, expansion, match_records
from settler_pipeline.domain.matching.blocks import BlockMatcher, match_blockwise, plan_blocks, reach_days
from settler_pipeline.domain.matching.config import (
    AmountDatePass,
    DateWindow,
    FuzzyPass,
    GroupPass,
    ReferencePass,
    SplitPass,
    Tolerance,
)
from tests.profiles import examples
from tests.unit.test_matcher_support import records


def _counts(rows: list[tuple[str | None, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"currency": pl.String(), "day": pl.Int64(), "records": pl.Int64()}, orient="row"
    )


def test_an_input_that_fits_one_block_is_matched_whole() -> None:
    (blocks,) = plan_blocks(_counts([("USD", 1, 10), ("EUR", 5, 10)]), block_records=20, reach=3)
    assert len(blocks) == 1 and blocks[0].whole and blocks[0].records == 20


def test_blocks_are_cut_by_currency_and_span_more_days_than_the_reach() -> None:
    days = [("USD", day, 10) for day in range(10)] + [("EUR", 3, 5), (None, 4, 1)]
    plans = plan_blocks(_counts(days), block_records=20, reach=3)
    by_currency = {blocks[0].currency: blocks for blocks in plans}
    assert set(by_currency) == {"USD", "EUR", None}
    usd = by_currency["USD"]
    # 20 records are reached after 2 days, but a block must span more than the reach (4 days)
    assert [(b.first_day, b.last_day, b.records) for b in usd] == [(0, 4, 50), (5, 9, 50)]
    assert [(b.first_day, b.last_day) for b in by_currency["EUR"]] == [(3, 3)]


def test_reach_is_the_widest_window_with_the_mismatch_search() -> None:
    config = MatchConfig(
        passes=[
            ReferencePass(date_window=DateWindow(days_before=2, days_after=7)),
            AmountDatePass(date_window=DateWindow(days_before=0, days_after=3), mismatch_search_days=5),
        ]
    )
    assert reach_days(config) == 8


def _lines(results: list[MatchResult], side: str) -> list[int]:
    used: list[int] = []
    for result in results:
        used += result.matches[f"{side}_lines"].explode().drop_nulls().to_list()
        used += result.unmatched.filter(pl.col("side") == side)["line_number"].to_list()
        used += result.duplicates.filter(pl.col("side") == side)["line_number"].to_list()
    return used


row = st.fixed_dictionaries(
    {
        "record_id": st.sampled_from(["a", "b", "c", "d", "e", "f", None]),
        "amount_minor": st.sampled_from([100, 101, 200, 300, -50]),
        "currency": st.sampled_from(["USD", "EUR"]),
        "day": st.integers(0, 20),
        "reference": st.sampled_from([None, "INV-1", "INV-2", "po_1"]),
        "description": st.sampled_from([None, "Payment INV-1", "JANE SMITH", "po_1"]),
        "group_key": st.sampled_from([None, "po_1"]),
        "in_range": st.booleans(),
    }
)
window = st.builds(DateWindow, days_before=st.integers(0, 2), days_after=st.integers(0, 3))
config = st.builds(
    lambda win, order: MatchConfig(
        passes=[
            [
                ReferencePass(date_window=win),
                AmountDatePass(tolerance=Tolerance(absolute_minor=1), date_window=win),
                GroupPass(date_window=win),
                FuzzyPass(date_window=win, min_score=0.5),
                SplitPass(date_window=win),
            ][i]
            for i in order
        ]
    ),
    window,
    st.permutations([0, 1, 2, 3, 4]),
)


@settings(max_examples=examples(100), deadline=None)
@given(
    sides=st.tuples(st.lists(row, max_size=14), st.lists(row, max_size=14)),
    match_config=config,
    block_records=st.integers(1, 8),
)
def test_block_wise_matching_settles_every_record_once_and_never_uses_one_twice(
    sides: tuple[list[dict[str, Any]], list[dict[str, Any]]], match_config: MatchConfig, block_records: int
) -> None:
    source_rows, target_rows = sides
    source, target = records(*source_rows), records(*target_rows)
    results = match_blockwise(source, target, match_config, run_id="blocks", block_records=block_records)
    for side, frame in (("source", source), ("target", target)):
        used = _lines(results, side)
        assert sorted(used) == sorted(frame["line_number"].to_list()), f"a {side} record in no or two buckets"
    currency = {("source", line): c for line, c in source.select("line_number", "currency").iter_rows()}
    currency |= {("target", line): c for line, c in target.select("line_number", "currency").iter_rows()}
    margin = {
        (side, line)
        for side, frame in (("source", source), ("target", target))
        for line in frame.filter(~pl.col("in_range"))["line_number"]
    }
    for result in results:
        for match in result.matches.iter_rows(named=True):
            keys = [("source", n) for n in match["source_lines"]] + [
                ("target", n) for n in match["target_lines"]
            ]
            assert {currency[key] for key in keys} == {match["currency"]}
            # Settled block by block, an item is still reported only when a record of it is in range.
            assert any(key not in margin for key in keys)
        outside = result.unmatched.filter(pl.col("reason") == "outside_range")
        assert all(key in margin for key in outside.select("side", "line_number").iter_rows())


@settings(max_examples=examples(50), deadline=None)
@given(sides=st.tuples(st.lists(row, max_size=14), st.lists(row, max_size=14)), match_config=config)
def test_match_rows_built_beside_the_explaining_are_the_rows_built_after_it(
    sides: tuple[list[dict[str, Any]], list[dict[str, Any]]], match_config: MatchConfig
) -> None:
    source, target = records(*sides[0]), records(*sides[1])
    days = pl.concat([source["occurred_at"], target["occurred_at"]]).dt.date().cast(pl.Int32)
    last_day = int(days.max()) if days.len() else 0  # type: ignore[arg-type]
    after, beside = (
        BlockMatcher(match_config, run_id="blocks", overlap=overlap).feed(
            source, target, last_day=last_day, last=True
        )
        for overlap in (False, True)
    )
    assert beside.matches.equals(after.matches)
    assert beside.unmatched.equals(after.unmatched)
    assert beside.duplicates.equals(after.duplicates)
    assert beside.source_in_range == after.source_in_range


@settings(max_examples=examples(100), deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 3), st.sampled_from(["USD", "EUR"]), st.booleans()),
        min_size=1,
        max_size=25,
    ),
    block_records=st.integers(1, 10),
)
def test_block_wise_finds_the_pairs_whole_matching_finds_across_block_boundaries(
    pairs: list[tuple[int, int, str, bool]], block_records: int
) -> None:
    """Unambiguous pairs (distinct amounts) settling 0-3 days later, some by reference: cut into
    blocks of a few records, the pairs straddling a boundary are found exactly as in whole matching."""
    source = records(
        *(
            {"amount_minor": 1000 + i, "currency": c, "day": day, "reference": f"INV-{i}" if ref else None}
            for i, (day, _lag, c, ref) in enumerate(pairs)
        )
    )
    target = records(
        *(
            {
                "amount_minor": 1000 + i,
                "currency": c,
                "day": day + lag,
                "reference": f"INV-{i}" if ref else None,
            }
            for i, (day, lag, c, ref) in enumerate(pairs)
        )
    )
    match_config = MatchConfig(
        passes=[
            ReferencePass(date_window=DateWindow(days_before=0, days_after=3)),
            AmountDatePass(date_window=DateWindow(days_before=0, days_after=3)),
        ]
    )
    whole = match_records(source, target, match_config, run_id="blocks")
    results = match_blockwise(source, target, match_config, run_id="blocks", block_records=block_records)
    blocked = pl.concat([r.matches for r in results])
    assert whole.matches.height == len(pairs)
    assert sorted(blocked["match_id"].to_list()) == sorted(whole.matches["match_id"].to_list())
    assert blocked.sort("match_id").equals(whole.matches.sort("match_id"))


@settings(max_examples=examples(40), deadline=None)
@given(
    sides=st.tuples(st.lists(row, max_size=30), st.lists(row, max_size=30)),
    chunk=st.integers(1, 7),
    crowded=st.sampled_from(["skip", "nearest"]),
)
def test_sources_searched_in_chunks_find_the_same_candidates(
    sides: tuple[list[dict[str, Any]], list[dict[str, Any]]], chunk: int, crowded: Literal["skip", "nearest"]
) -> None:
    tolerance = Tolerance(absolute_minor=100)
    whole = _window_search(sides, tolerance, crowded)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(candidates, "SOURCE_CHUNK", chunk)
        chunked = _window_search(sides, tolerance, crowded)
    assert chunked.pairs.sort(pl.all()).equals(whole.pairs.sort(pl.all()))
    assert sorted(chunked.crowded_lines.to_list()) == sorted(whole.crowded_lines.to_list())


def _window_search(
    sides: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    tolerance: Tolerance,
    crowded: Literal["skip", "nearest"],
) -> candidates.Candidates:
    """The candidate search over ``sides`` (a day window of -1..+2, two candidates per source)."""
    source, target = (
        records(*rows).with_columns(day=pl.col("occurred_at").dt.date().cast(pl.Int64)) for rows in sides
    )
    return candidates.window_candidates(
        source, target, tolerance=tolerance, days_before=1, days_after=2, max_candidates=2, crowded=crowded
    )


# Dense rows (few days, amounts and currencies): most sources are crowded, over several days.
dense_row = st.fixed_dictionaries(
    {
        "amount_minor": st.sampled_from([100, 101, 120, 150, 200]),
        "currency": st.sampled_from(["USD", "USD", "EUR"]),
        "day": st.integers(0, 3),
    }
)


@settings(max_examples=examples(60), deadline=None)
@given(
    sides=st.tuples(st.lists(dense_row, max_size=12), st.lists(dense_row, max_size=40)),
    at_once=st.integers(1, 7),
    crowded=st.sampled_from(["skip", "nearest"]),
    percent_of=st.sampled_from(["source", "target"]),
)
def test_pairs_expanded_a_few_at_a_time_are_the_same_pairs_in_the_same_order(
    sides: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    at_once: int,
    crowded: Literal["skip", "nearest"],
    percent_of: Literal["source", "target"],
) -> None:
    tolerance = Tolerance(absolute_minor=50, percent="10", percent_of=percent_of)
    whole = _window_search(sides, tolerance, crowded)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(expansion, "PAIRS_AT_ONCE", at_once)
        sliced = _window_search(sides, tolerance, crowded)
    assert sliced.pairs.equals(whole.pairs)
    assert sliced.crowded_lines.equals(whole.crowded_lines)


def test_a_block_settles_a_match_of_margin_records_only_as_outside_the_range() -> None:
    # Blocks of days 0-3 and day 20 (as a run feeds them): the day-0 pair, read only as margin,
    # settles in the first block, before the last one.
    pairs = [(0, 100, False), (3, 200, True), (20, 300, True)]
    source = records(*({"day": d, "amount_minor": a, "in_range": r} for d, a, r in pairs))
    target = records(*({"day": d, "amount_minor": a, "in_range": r} for d, a, r in pairs))
    passes = MatchConfig(
        passes=[AmountDatePass(date_window=DateWindow(days_after=1), mismatch_search_days=0)]
    )
    matcher = BlockMatcher(passes, run_id="blocks")
    first_day = int(source["occurred_at"].dt.date().cast(pl.Int32).min())  # type: ignore[arg-type]
    first = matcher.feed(source.head(2), target.head(2), last_day=first_day + 3, last=False)
    last = matcher.feed(source.tail(1), target.tail(1), last_day=first_day + 20, last=True)
    assert first.matches.height == 0  # the day-3 pair is carried into the next block
    assert sorted(last.matches["source_amount_minor"]) == [200, 300]
    assert sorted(first.unmatched.select("side", "amount_minor", "reason").rows()) == [
        ("source", 100, "outside_range"),
        ("target", 100, "outside_range"),
    ]
    assert first.source_in_range == {"matched": 0, "proposed": 0}
