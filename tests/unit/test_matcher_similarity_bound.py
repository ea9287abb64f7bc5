"""The similarity bound never rules out a pair that reaches the score (hypothesis), and rules out
pairs that share nothing."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from settler_pipeline.domain.matching.similarity_bound import (
    TOKEN_SLOTS,
    WIDEST,
    TextFeatures,
    may_reach,
    text_features,
)
from tests.profiles import examples

word = st.one_of(
    st.sampled_from(["invoice", "inv", "734840", "jane", "smith", "janes", "smyth", "ltd", "1", "a"]),
    st.text(alphabet="abcxyz019éßж中", min_size=1, max_size=WIDEST // 3),
)
# Texts as the fuzzy pass cleans them: words of letters and digits joined by single spaces.
text = st.lists(word, max_size=TOKEN_SLOTS + 3).map(" ".join)
THRESHOLDS = (30.0, 60.0, 84.99, 95.0, 100.0)


def _reachable(left: list[str], right: list[str], score: float) -> np.ndarray:
    a_rows = np.repeat(np.arange(len(left), dtype=np.int64), len(right))
    b_rows = np.tile(np.arange(len(right), dtype=np.int64), len(left))
    a = text_features(pl.Series(left, dtype=pl.String))
    b = text_features(pl.Series(right, dtype=pl.String))
    return may_reach(a, b, a_rows, b_rows, score).reshape(len(left), len(right))


@settings(max_examples=examples(300))
@given(st.lists(text, min_size=1, max_size=6), st.lists(text, min_size=1, max_size=6))
def test_a_pair_ruled_out_scores_below_the_threshold(left: list[str], right: list[str]) -> None:
    for score in THRESHOLDS:
        reachable = _reachable(left, right, score)
        for i, a in enumerate(left):
            for j, b in enumerate(right):
                if not reachable[i, j]:
                    assert fuzz.token_set_ratio(a, b) < score, (a, b, score)


def test_a_name_inside_a_memo_may_reach_any_score() -> None:
    assert _reachable(["jane smith"], ["transfer from jane smith"], 100.0).all()


def test_texts_with_nothing_in_common_are_ruled_out() -> None:
    reachable = _reachable(
        ["invoice inv 734840", "", "jane smith"], ["payment from allen sarl", "jane"], 85.0
    )
    assert reachable.tolist() == [[False, False], [False, False], [False, True]]


def test_a_repeated_word_counts_once() -> None:
    # As a token set "jane jane jane jane" is "jane", all of it in the other text: a length taken
    # with the repeats would bound its score at 200 * 4 / (4 + 10), far below.
    assert fuzz.token_set_ratio("jane jane jane jane", "jane smith") == 100.0
    assert _reachable(["jane jane jane jane"], ["jane smith"], 100.0).all()


def _slots(features: TextFeatures, row: int) -> list[tuple[int, int]]:
    return sorted(
        (int(bits[row]), int(lengths[row]))
        for bits, lengths in zip(features.slot_bits, features.slot_lengths, strict=True)
        if lengths[row]
    )


def test_a_text_repeated_on_many_records_has_the_features_it_has_alone() -> None:
    # Fewer distinct texts than half the records: each is worked out once and given to its records.
    texts = ["transfer from jane smith", "jane smith", "transfer from jane smith", None, "jane smith"] * 2
    together = text_features(pl.Series(texts, dtype=pl.String))
    for row, text in enumerate(texts):
        alone = text_features(pl.Series([text, "x"], dtype=pl.String))
        assert together.length[row] == alone.length[0]
        assert together.signature[row] == alone.signature[0]
        assert together.histogram[row].tolist() == alone.histogram[0].tolist()
        assert _slots(together, row) == _slots(alone, 0)
