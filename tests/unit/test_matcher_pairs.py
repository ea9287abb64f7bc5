"""Attaching both records' amounts, days and currencies to key pairs (``pairs.attach_checks``)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.matching.pairs import attach_checks, keyed_pairs
from settler_pipeline.domain.matching.positions import LinePositions
from tests.profiles import examples

COLS = ["line_number", "amount_minor", "currency", "day"]


def _side(lines: list[int], prefix: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "line_number": lines,
            "amount_minor": [line * 7 - 300 for line in lines],
            "currency": [None if line % 5 == 0 else ("EUR" if line % 2 else "USD") for line in lines],
            "day": [20_000 + line % 9 for line in lines],
            "record_id": [f"{prefix}{line}" for line in lines],
        },
        schema={
            "line_number": pl.Int64(),
            "amount_minor": pl.Int64(),
            "currency": pl.String(),
            "day": pl.Int64(),
            "record_id": pl.String(),
        },
    )


def _joined(pairs: pl.DataFrame, source: pl.DataFrame, target: pl.DataFrame) -> pl.DataFrame:
    """What attach_checks promises, spelled as the two joins it stands for."""
    return (
        pairs.join(
            source.select(COLS).rename({c: f"s_{c}" for c in COLS}),
            left_on="source_line",
            right_on="s_line_number",
        )
        .join(
            target.select(COLS).rename({c: f"t_{c}" for c in COLS}),
            left_on="target_line",
            right_on="t_line_number",
        )
        .with_columns(
            amount_difference=pl.col("t_amount_minor") - pl.col("s_amount_minor"),
            day_difference=pl.col("t_day") - pl.col("s_day"),
            currency_ok=(pl.col("s_currency") == pl.col("t_currency")).fill_null(False),
        )
    )


lines = st.lists(st.integers(1, 60), unique=True, max_size=25)


@settings(max_examples=examples(200), deadline=None)
@given(
    source_lines=lines,
    target_lines=lines,
    pair_lines=st.lists(st.tuples(st.integers(0, 70), st.integers(0, 70)), max_size=30),
    sparse=st.booleans(),
    repeated=st.booleans(),
)
def test_attached_checks_are_those_of_joining_both_sides(
    source_lines: list[int],
    target_lines: list[int],
    pair_lines: list[tuple[int, int]],
    sparse: bool,
    repeated: bool,
) -> None:
    # Dense lines are looked up by position, sparse ones (or a repeated line) joined: both give the
    # rows of the joins, pairs whose record is on neither side dropped, every other pair kept.
    scale = 10**12 if sparse else 1
    source = _side([line * scale for line in source_lines], "s")
    target = _side(target_lines, "t")
    if repeated and target.height:
        target = pl.concat([target, target.head(1)])
    pairs = pl.DataFrame(
        {"source_line": [s * scale for s, _ in pair_lines], "target_line": [t for _, t in pair_lines]},
        schema={"source_line": pl.Int64(), "target_line": pl.Int64()},
    ).with_columns(via=pl.int_range(pl.len(), dtype=pl.Int64))
    got = attach_checks(pairs, source, target)
    want = _joined(pairs, source, target)
    assert got.columns == want.columns
    assert got.sort(pl.all()).equals(want.sort(pl.all()))


def test_pairs_keep_their_order_and_unknown_lines_are_dropped() -> None:
    source, target = _side([3, 4, 5], "s"), _side([10, 11], "t")
    pairs = pl.DataFrame({"source_line": [5, 9, 3, 4], "target_line": [10, 10, 11, 12]})
    got = attach_checks(pairs, source, target)
    assert got.select("source_line", "target_line").rows() == [(5, 10), (3, 11)]
    assert got["amount_difference"].to_list() == [10 * 7 - 5 * 7, 11 * 7 - 3 * 7]
    assert got["currency_ok"].to_list() == [False, True]


@settings(max_examples=examples(200), deadline=None)
@given(
    lines=st.lists(st.integers(-5, 80), max_size=40),
    wanted=st.lists(st.integers(-10, 90), max_size=40),
    scale=st.sampled_from([1, 3, 10**9]),
)
def test_line_positions_find_the_row_of_each_line(lines: list[int], wanted: list[int], scale: int) -> None:
    # Dense spans are looked up in an array, sparse ones (scaled far apart) by binary search.
    lines, wanted = [line * scale for line in lines], [line * scale for line in wanted]
    positions = LinePositions(pl.Series(lines, dtype=pl.Int64))
    assert positions.unique == (len(set(lines)) == len(lines))
    rows = positions.rows(np.asarray(wanted, dtype=np.int64)).tolist()
    for line, row in zip(wanted, rows, strict=True):
        if line in lines:
            assert lines[row] == line
        else:
            assert row == -1


@settings(max_examples=examples(100), deadline=None)
@given(
    source=st.lists(st.tuples(st.integers(-3, 30), st.sampled_from("ABCDE")), max_size=40),
    target=st.lists(st.tuples(st.integers(1, 30), st.sampled_from("ABCDE"), st.integers(0, 1)), max_size=40),
    max_candidates=st.integers(1, 4),
)
def test_keyed_pairs_are_the_pairs_of_equal_keys_found_at_most_max_candidates_times_a_side(
    source: list[tuple[int, str]], target: list[tuple[int, str, int]], max_candidates: int
) -> None:
    source_keys = pl.DataFrame(source, schema={"line_number": pl.Int64(), "key": pl.String()}, orient="row")
    target_keys = pl.DataFrame(
        target, schema={"line_number": pl.Int64(), "key": pl.String(), "via": pl.Int64()}, orient="row"
    )
    counts = [Counter(key for _, key, *_ in side) for side in (source, target)]
    expected: dict[tuple[int, int], int] = {}
    for s_line, key in source:
        for t_line, t_key, via in target:
            if key == t_key and all(count[key] <= max_candidates for count in counts):
                expected[s_line, t_line] = min(via, expected.get((s_line, t_line), via))
    pairs = keyed_pairs(source_keys, target_keys, max_candidates=max_candidates)
    assert pairs.height == len(expected)
    assert (
        dict(zip(zip(pairs["source_line"], pairs["target_line"], strict=True), pairs["via"], strict=True))
        == expected
    )
