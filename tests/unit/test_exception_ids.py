"""Exception ids: one format, the same from Python and from Polars, and readable back."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.errors import ValidationError

record_ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)
sides = st.sampled_from(xid.SIDES)


@given(side=sides, record_id=record_ids, line=st.integers(1, 10**9), match_id=record_ids)
def test_every_id_reads_back_as_what_it_was_built_from(
    side: str, record_id: str, line: int, match_id: str
) -> None:
    for built, kind, want_side, key in (
        (xid.unmatched(side, record_id), xid.UNMATCHED, side, record_id),
        (xid.duplicate(side, line), xid.DUPLICATE, side, str(line)),
        (xid.quarantined(side, line), xid.QUARANTINED, side, str(line)),
        (xid.proposed(match_id), xid.PROPOSED, None, match_id),
    ):
        parsed = xid.parse(built)
        assert (parsed.kind, parsed.side, parsed.key) == (kind, want_side, key)
        assert str(parsed) == built


@given(rows=st.lists(st.tuples(sides, record_ids, st.integers(1, 10**6)), min_size=1, max_size=20))
def test_the_polars_forms_build_the_same_strings(rows: list[tuple[str, str, int]]) -> None:
    frame = pl.DataFrame(rows, schema={"side": pl.String, "id": pl.String, "line": pl.Int64}, orient="row")
    built = frame.select(
        xid.unmatched_expr("side", "id").alias("u"),
        xid.duplicate_expr("side", "line").alias("d"),
        xid.quarantined_expr(pl.col("side"), pl.col("line")).alias("q"),
        xid.proposed_expr("id").alias("p"),
        xid.record_item_expr(pl.lit(xid.UNMATCHED), "side", "id").alias("ru"),
        xid.record_item_expr(pl.lit(xid.DUPLICATE), "side", "line").alias("rd"),
        xid.record_item_expr(pl.lit(xid.QUARANTINED), "side", pl.col("line")).alias("rq"),
    )
    assert built["ru"].to_list() == built["u"].to_list()
    assert built["rd"].to_list() == built["d"].to_list()
    assert built["rq"].to_list() == built["q"].to_list()
    assert built["u"].to_list() == [xid.unmatched(s, i) for s, i, _ in rows]
    assert built["d"].to_list() == [xid.duplicate(s, n) for s, _, n in rows]
    assert built["q"].to_list() == [xid.quarantined(s, n) for s, _, n in rows]
    assert built["p"].to_list() == [xid.proposed(i) for _, i, _ in rows]
    back = built.select(
        xid.is_kind_expr("p", xid.PROPOSED).all().alias("all_proposed"),
        xid.is_kind_expr("u", xid.PROPOSED).any().alias("any_unmatched_proposed"),
        xid.proposed_match_id_expr("p").alias("match_id"),
    )
    assert back["all_proposed"][0] and not back["any_unmatched_proposed"][0]
    assert back["match_id"].to_list() == [i for _, i, _ in rows]


@pytest.mark.parametrize(
    "text", ["", "proposed:", "unmatched:left:ch_1", "unmatched:source:", "settled:source:1", "ch_123"]
)
def test_a_malformed_id_is_refused_with_the_forms_that_exist(text: str) -> None:
    with pytest.raises(ValidationError, match="not an exception id") as raised:
        xid.parse(text)
    assert raised.value.hint is not None and "unmatched:<source|target>" in raised.value.hint
