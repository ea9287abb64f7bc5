"""The rules that find payloads Polars' JSON decoder refuses agree with the decoder itself: a payload
called a misfit is refused, and (for the JSON they can judge) a payload called fitting is taken."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.store.json_fit import misfits
from settler_pipeline.store.payloads import PAYLOAD_SCHEMA
from tests.profiles import examples

_TYPES = sorted({str(t): t for t in PAYLOAD_SCHEMA.values()}.items())
"""Every column type of the typed payload columns (scalars, lists of scalars and of structs, structs)."""

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "amount", "type", "message", "start", "x"]) | st.text(max_size=3),
            inner,
            max_size=4,
        )
    ),
    max_leaves=8,
)


def decoder_takes(text: str, dtype: pl.DataType) -> bool:
    try:
        pl.Series([text]).str.json_decode(dtype)
    except pl.exceptions.PolarsError:
        return False
    return True


@settings(max_examples=examples(400), deadline=None)
@given(column=st.sampled_from(_TYPES), value=_VALUES)
def test_a_payload_is_called_a_misfit_exactly_when_the_decoder_refuses_it(
    column: tuple[str, pl.DataType], value: Any
) -> None:
    schema = pl.Struct({"field": column[1]})
    text = json.dumps({"field": value})
    assert misfits([text], schema) == [not decoder_takes(text, schema)], text


@pytest.mark.parametrize(
    "text",
    [
        '{"field": 1, "field": "x"}',  # repeated keys: which one the decoder keeps is its affair
        '{"field": NaN}',
        '{"field": 1e400}',
        "not json",
        "",
    ],
)
def test_what_the_rules_cannot_judge_is_left_to_the_decoder(text: str) -> None:
    assert misfits([text], pl.Struct({"field": pl.Int64()})) == [False]


def test_only_objects_and_null_are_payloads() -> None:
    schema = pl.Struct({"field": pl.Int64()})
    texts = ["5", "[1]", '"x"', "null", "{}", None]
    assert misfits(texts, schema) == [True, True, True, False, False, False]
    assert [not decoder_takes(t, schema) for t in texts[:5]] == [True, True, True, False, False]
