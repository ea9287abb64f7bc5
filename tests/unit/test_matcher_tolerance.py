"""Tolerances in exact integer arithmetic, and the building blocks under the passes."""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from typing import Literal
from unittest.mock import patch

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from settler_pipeline.domain.matching import AmountDatePass, MatchConfig, ReferencePass, Tolerance
from settler_pipeline.domain.matching import candidates as candidates_module
from settler_pipeline.domain.matching.candidates import window_candidates
from settler_pipeline.domain.matching.config import MAX_TOLERANCE_MINOR
from settler_pipeline.domain.matching.expansion import nearest_of_each
from settler_pipeline.domain.matching.normalise import (
    TOKEN_PATTERN,
    description_tokens,
    normalise_key,
    normalise_prefixes,
    normalise_reference,
)
from settler_pipeline.domain.matching.resolve import resolve_mutual_best
from settler_pipeline.domain.matching.sorted_keys import SortedKeys
from settler_pipeline.domain.matching.tolerance import (
    MAX_ABS_AMOUNT_MINOR,
    allowed_difference,
    search_radius,
    within_tolerance,
)
from tests.profiles import examples
from tests.unit.test_matcher_support import links, run


def _fits(tolerance: Tolerance, source: int, target: int) -> bool:
    return bool(within_tolerance(np.array([source]), np.array([target]), tolerance)[0])


@pytest.mark.parametrize(
    ("absolute", "percent", "percent_of", "combine", "source", "target", "expected"),
    [
        (50, "0", "source", "either", 1000, 950, True),  # absolute only
        (50, "0", "source", "either", 1000, 949, False),
        (0, "1", "source", "either", 1050, 1060, True),  # floor(10.5) = 10
        (0, "1", "source", "either", 1050, 1061, False),
        (0, "10", "source", "either", 1000, 1101, False),  # 10 % of the source: 100
        (0, "10", "target", "either", 1000, 1101, True),  # 10 % of the target: 110
        (0, "10", "target", "either", 1000, 1112, False),  # floor(111.2) = 111
        (100, "1", "source", "either", 5000, 5100, True),  # max(100, 50)
        (100, "1", "source", "both", 5000, 5100, False),  # min(100, 50)
        (100, "1", "source", "both", 5000, 5050, True),
        (0, "1", "source", "either", -1000, -1010, True),  # the base is an absolute amount
        (0, "2.5", "source", "either", 1000, 1025, True),
        (0, "2.5", "source", "either", 1000, 1026, False),
        (0, "0.0001", "source", "either", 10**10, 10**10 + 10_000, True),
        (0, "0", "source", "either", 1000, 1000, True),
        (0, "0", "source", "either", 1000, 1001, False),
    ],
)
def test_the_documented_tolerance_formula(
    absolute: int,
    percent: str,
    percent_of: Literal["source", "target"],
    combine: Literal["either", "both"],
    source: int,
    target: int,
    expected: bool,
) -> None:
    tolerance = Tolerance(
        absolute_minor=absolute, percent=Decimal(percent), percent_of=percent_of, combine=combine
    )
    assert _fits(tolerance, source, target) is expected


def test_percentages_finer_than_four_decimals_are_refused() -> None:
    with pytest.raises(PydanticValidationError):
        Tolerance(percent=Decimal("0.00001"))


def test_pass_names_must_be_unique() -> None:
    with pytest.raises(PydanticValidationError, match="unique"):
        MatchConfig(passes=[AmountDatePass(), AmountDatePass()])


def test_percent_arithmetic_does_not_overflow_on_the_largest_amounts() -> None:
    allowed = allowed_difference(np.array([10**15]), Tolerance(percent=Decimal("99.9999")))
    assert allowed[0] == 10**15 * 999_999 // 1_000_000


@settings(max_examples=examples(200), deadline=None)
@given(
    source=st.integers(-(10**12), 10**12),
    delta=st.integers(-(10**9), 10**9),
    absolute=st.integers(0, 10**6),
    percent=st.decimals(min_value=0, max_value=60, places=4),
    percent_of=st.sampled_from(["source", "target"]),
    combine=st.sampled_from(["either", "both"]),
)
def test_the_search_radius_contains_every_target_within_tolerance(
    source: int, delta: int, absolute: int, percent: Decimal, percent_of: str, combine: str
) -> None:
    tolerance = Tolerance.model_validate(
        {"absolute_minor": absolute, "percent": percent, "percent_of": percent_of, "combine": combine}
    )
    if _fits(tolerance, source, source + delta):
        assert abs(delta) <= search_radius(np.array([source]), tolerance)[0]


def test_a_fee_within_the_amount_tolerance_matches_and_a_larger_one_does_not() -> None:
    within = AmountDatePass(tolerance=Tolerance(absolute_minor=30), mismatch_search_days=0)
    assert links(run([{"amount_minor": 5000}], [{"amount_minor": 4970}], within))
    assert not links(run([{"amount_minor": 5000}], [{"amount_minor": 4969}], within))


def test_percent_of_target_is_applied_to_the_target_amount_in_a_pass() -> None:
    of_target = AmountDatePass(
        tolerance=Tolerance(percent=Decimal(10), percent_of="target"), mismatch_search_days=0
    )
    assert links(run([{"amount_minor": 1000}], [{"amount_minor": 1110}], of_target))
    assert not links(
        run(
            [{"amount_minor": 1000}],
            [{"amount_minor": 1110}],
            AmountDatePass(tolerance=Tolerance(percent=Decimal(10)), mismatch_search_days=0),
        )
    )


def _frame(amounts: list[int], days: list[int], currencies: list[str] | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "line_number": list(range(1, len(amounts) + 1)),
            "amount_minor": amounts,
            "currency": currencies or ["USD"] * len(amounts),
            "day": days,
        },
        schema={"line_number": pl.Int64, "amount_minor": pl.Int64, "currency": pl.String, "day": pl.Int64},
    )


@settings(max_examples=examples(100), deadline=None)
@given(
    source=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 6), st.sampled_from(["USD", "EUR"])), max_size=12
    ),
    target=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 6), st.sampled_from(["USD", "EUR"])), max_size=12
    ),
    absolute=st.integers(0, 5),
    percent=st.sampled_from(["0", "5", "12.5"]),
    percent_of=st.sampled_from(["source", "target"]),
    before=st.integers(0, 2),
    after=st.integers(0, 3),
)
def test_sorted_search_finds_exactly_the_pairs_a_cross_join_would(
    source: list[tuple[int, int, str]],
    target: list[tuple[int, int, str]],
    absolute: int,
    percent: str,
    percent_of: str,
    before: int,
    after: int,
) -> None:
    tolerance = Tolerance.model_validate(
        {"absolute_minor": absolute, "percent": percent, "percent_of": percent_of}
    )
    src = _frame([s[0] for s in source], [s[1] for s in source], [s[2] for s in source])
    tgt = _frame([t[0] for t in target], [t[1] for t in target], [t[2] for t in target])
    found = window_candidates(
        src, tgt, tolerance=tolerance, days_before=before, days_after=after, max_candidates=1000
    ).pairs
    expected = {
        (i + 1, j + 1)
        for i, (sa, sd, sc) in enumerate(source)
        for j, (ta, td, tc) in enumerate(target)
        if sc == tc and -before <= td - sd <= after and _fits(tolerance, sa, ta)
    }
    assert set(zip(found["source_line"], found["target_line"], strict=True)) == expected


def test_crowded_sources_keep_only_their_nearest_candidates_when_asked() -> None:
    src = _frame([1000], [0])
    tgt = _frame([900, 1000, 1001, 1100, 999], [0, 0, 0, 0, 1])
    result = window_candidates(
        src,
        tgt,
        tolerance=Tolerance(absolute_minor=200),
        days_before=0,
        days_after=1,
        max_candidates=2,
        crowded="nearest",
    )
    assert sorted(result.pairs["target_line"].to_list()) == [2, 3]
    assert result.crowded_lines.to_list() == [1]


def test_a_crowded_source_whose_candidates_all_miss_the_tolerance_keeps_none() -> None:
    # 10% of the target: 889 lies in the search radius of 1000 (111) but only 88 is allowed.
    src = _frame([1000], [0])
    tgt = _frame([889, 889, 889], [0, 0, 0])
    result = window_candidates(
        src,
        tgt,
        tolerance=Tolerance(percent=Decimal(10), percent_of="target"),
        days_before=0,
        days_after=0,
        max_candidates=2,
        crowded="nearest",
    )
    assert result.pairs.height == 0
    assert result.crowded_lines.to_list() == [1]


def test_mutual_best_ignores_row_order_and_leaves_ties_ambiguous() -> None:
    pairs = pl.DataFrame(
        {"source_line": [1, 1, 2, 3, 3], "target_line": [10, 11, 10, 12, 13], "score": [0, 1, 0, 0, 0]}
    )
    for frame in (pairs, pairs.reverse()):
        resolution = resolve_mutual_best(frame, ["score"])
        assert (
            set(zip(resolution.chosen["source_line"], resolution.chosen["target_line"], strict=True)) == set()
        )
        ambiguous = set(zip(resolution.ambiguous["side"], resolution.ambiguous["line_number"], strict=True))
        # Target 11 depends on how the tie over target 10 is settled, so it is held up too.
        assert ambiguous == {
            ("source", 1),
            ("source", 2),
            ("target", 10),
            ("target", 11),
            ("source", 3),
            ("target", 12),
            ("target", 13),
        }


def test_reference_normalisation_rules() -> None:
    frame = pl.DataFrame({"r": [" inv-0012 ", "PO-77", "REF-", "", None, "ab c"]})
    got = frame.select(
        normalise_reference(pl.col("r"), ["INV-", "PO-", "REF-"]).alias("ref"),
        normalise_key(pl.col("r")).alias("key"),
    )
    assert got["ref"].to_list() == ["0012", "77", None, None, None, "ABC"]
    assert got["key"].to_list() == ["INV-0012", "PO-77", "REF-", None, None, "ABC"]


def test_description_tokens_are_normalised_and_short_ones_dropped() -> None:
    frame = pl.DataFrame(
        {"line_number": [1, 2], "d": ["Payment INV-00123, 12 thanks", "STRIPE PAYOUT po_1AbC"]}
    )
    tokens = description_tokens(frame, "d", ReferencePass().strip_prefixes, min_length=4)
    # A key may come twice from one memo (a token and its piece): the passes pair by key anyway.
    assert sorted(set(zip(tokens["line_number"], tokens["key"], strict=True))) == [
        (1, "00123"),
        (1, "PAYMENT"),
        (1, "THANKS"),
        (2, "PAYOUT"),
        (2, "PO_1ABC"),
        (2, "STRIPE"),
    ]


def _documented_tokens(memo: str, prefixes: list[str], min_length: int) -> list[str]:
    """The memo tokens as the module docstring of ``normalise`` describes them, one at a time."""
    ordered = normalise_prefixes(prefixes)
    found = []
    for whole in re.findall(TOKEN_PATTERN, memo.upper()):
        pieces = re.split("[/.:;,]", whole) if re.search("[/.:;,]", whole) else []
        dashed = [c for c in (pieces or [whole]) if "-" in c]
        for token in [whole, *pieces, *(p for c in dashed for p in c.split("-"))]:
            if len(token) < min_length:
                continue
            key = next((token[len(p) :] for p in ordered if token.startswith(p)), token)
            if key:
                found.append(key)
    return found


@settings(max_examples=examples(200), deadline=None)
@given(
    memos=st.lists(st.none() | st.text(alphabet="aZ09 -_/.:;,\t\u00e9\u00dfINVPO", max_size=24), max_size=8),
    prefixes=st.sampled_from([[], ["INV-", "INV", "PO-"], ["I", "IN", "-"], ["Z/"]]),
    min_length=st.integers(0, 5),
    kept=st.sets(st.text(alphabet="AZ09-_INVPO", min_size=1, max_size=4)),
)
def test_description_tokens_are_the_documented_tokens(
    memos: list[str | None], prefixes: list[str], min_length: int, kept: set[str]
) -> None:
    frame = pl.DataFrame(
        {"line_number": range(len(memos)), "d": memos}, schema={"line_number": pl.Int64, "d": pl.String}
    )
    expected = Counter(
        (line, key)
        for line, memo in enumerate(memos)
        if memo is not None
        for key in _documented_tokens(memo, prefixes, min_length)
    )
    tokens = description_tokens(frame, "d", prefixes, min_length=min_length)
    assert Counter(zip(tokens["line_number"], tokens["key"], strict=True)) == expected
    # Narrowed to the keys a caller can use, every one of those is still there, as often.
    narrowed = description_tokens(
        frame, "d", prefixes, min_length=min_length, among=pl.col("key").is_in(kept)
    )
    got = Counter(zip(narrowed["line_number"], narrowed["key"], strict=True))
    assert got <= expected
    assert {k: n for k, n in got.items() if k[1] in kept} == {
        k: n for k, n in expected.items() if k[1] in kept
    }


def test_the_nearest_candidates_kept_for_a_crowded_source_do_not_depend_on_row_order() -> None:
    src = _frame([1000], [0])
    tgt = _frame([1000] * 5, [0] * 5)
    for frame in (tgt, tgt.reverse(), tgt.sample(fraction=1.0, shuffle=True, seed=1)):
        kept = window_candidates(
            src,
            frame,
            tolerance=Tolerance(absolute_minor=10),
            days_before=0,
            days_after=0,
            max_candidates=2,
            crowded="nearest",
        ).pairs
        assert sorted(kept["target_line"].to_list()) == [1, 2]


@settings(max_examples=examples(100), deadline=None)
# A run of equal amounts just below the source, longer than what is kept: its lowest lines (the slice
# around the insertion point used to keep its highest).
@example(source=[(10, 0)], target=[(9, 0)] * 3, absolute=5, percent="0", percent_of="source", keep=2)
@example(
    source=[(10, 1)],
    target=[(9, 0)] * 4 + [(11, 1)] * 4,
    absolute=5,
    percent="0",
    percent_of="target",
    keep=3,
)
@given(
    source=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), min_size=1, max_size=8),
    target=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=80),
    absolute=st.integers(0, 20),
    percent=st.sampled_from(["0", "10", "50"]),
    percent_of=st.sampled_from(["source", "target"]),
    keep=st.integers(1, 3),
)
def test_a_crowded_source_keeps_exactly_its_nearest_candidates_by_amount_then_days_then_line(
    source: list[tuple[int, int]],
    target: list[tuple[int, int]],
    absolute: int,
    percent: str,
    percent_of: str,
    keep: int,
) -> None:
    tolerance = Tolerance.model_validate(
        {"absolute_minor": absolute, "percent": percent, "percent_of": percent_of}
    )
    src = _frame([s[0] for s in source], [s[1] for s in source])
    tgt = _frame([t[0] for t in target], [t[1] for t in target])
    expected = set()
    for i, (sa, sd) in enumerate(source):
        candidates = sorted(
            (abs(ta - sa), abs(td - sd), j + 1)
            for j, (ta, td) in enumerate(target)
            if -1 <= td - sd <= 2 and _fits(tolerance, sa, ta)
        )
        expected |= {(i + 1, line) for _, _, line in candidates[:keep]}
    # Crowded sources cut to their nearest before expanding (always, at a threshold of 0) or not.
    for threshold in (0, 10**9):
        with patch.object(candidates_module, "_NARROW_FROM", threshold):
            found = window_candidates(
                src,
                tgt,
                tolerance=tolerance,
                days_before=1,
                days_after=2,
                max_candidates=keep,
                crowded="nearest",
            ).pairs
        assert set(zip(found["source_line"], found["target_line"], strict=True)) == expected


def test_the_largest_tolerance_allowed_matches_the_widest_amounts_without_overflow() -> None:
    widest = AmountDatePass(tolerance=Tolerance(absolute_minor=MAX_TOLERANCE_MINOR))
    result = run([{"amount_minor": -MAX_ABS_AMOUNT_MINOR}], [{"amount_minor": MAX_ABS_AMOUNT_MINOR}], widest)
    assert result.matches.height == 1
    assert result.matches["amount_difference_minor"][0] == 2 * MAX_ABS_AMOUNT_MINOR
    with pytest.raises(PydanticValidationError, match="less than or equal to"):
        Tolerance(absolute_minor=MAX_TOLERANCE_MINOR + 1)


@settings(max_examples=examples(200))
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4), st.sampled_from([0, 1, 7, 2**40, 2**62]), st.integers(0, 3), st.integers(0, 9)
        ),
        max_size=40,
    ),
    st.integers(1, 5),
)
def test_nearest_of_each_keeps_the_first_k_of_each_source_by_amount_then_days_then_line(
    pairs: list[tuple[int, int, int, int]], k: int
) -> None:
    # Amounts up to 2**62 do not fit one packed integer with the rest: both sorts are exercised.
    src, amount, days, line = (np.array([p[i] for p in pairs], dtype=np.int64) for i in range(4))
    kept = nearest_of_each(src, amount, days, line, k)
    ranked = sorted(range(len(pairs)), key=lambda i: (pairs[i][0], pairs[i][1], pairs[i][2], pairs[i][3], i))
    expected = np.zeros(len(pairs), dtype=np.bool_)
    for i in ranked:
        expected[i] = sum(expected[j] for j in range(len(pairs)) if pairs[j][0] == pairs[i][0]) < k
    assert kept.tolist() == expected.tolist()


@settings(max_examples=examples(200))
@given(
    st.lists(st.integers(-50, 50), max_size=30),
    st.lists(st.integers(-60, 60), max_size=30),
    st.sampled_from([1, 2**21, 2**40]),
)
def test_sorted_keys_give_the_insertion_points_of_a_binary_search(
    keys: list[int], values: list[int], scale: int
) -> None:
    # A scale of 2**21 or more spreads the keys wider than a table is built for: the binary
    # search answers instead, and must agree.
    sorted_keys = np.array(sorted(keys), dtype=np.int64) * scale
    wanted = np.array(values, dtype=np.int64) * scale
    found = SortedKeys(sorted_keys)
    assert found.left(wanted).tolist() == np.searchsorted(sorted_keys, wanted, side="left").tolist()
    assert found.right(wanted).tolist() == np.searchsorted(sorted_keys, wanted, side="right").tolist()
