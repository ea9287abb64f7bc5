"""Payload schemas come from the payload models: every event type has one, and a real payload
decodes into it without loss."""

from __future__ import annotations

import json
from typing import Any, Literal

import polars as pl
import pytest
from pydantic import BaseModel

from settler_pipeline.domain import events as e
from settler_pipeline.domain.payload_schema import model_schema, polars_type, union_schema


@pytest.mark.parametrize("event_type", sorted(e.PAYLOADS))
def test_every_event_type_has_a_columnar_schema(event_type: str) -> None:
    schema = model_schema(e.PAYLOADS[event_type])
    assert list(schema) == list(e.PAYLOADS[event_type].model_fields)


class _Inner(BaseModel):
    n: int


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, pl.String()),
        (int | None, pl.Int64()),
        (Literal["source", "target"], pl.String()),
        (list[str], pl.List(pl.String())),
        (dict[str, Any], pl.String()),
        (_Inner, pl.Struct({"n": pl.Int64()})),
        (float, pl.Float64()),
        (bool, pl.Boolean()),
    ],
)
def test_annotations_map_to_the_column_types_of_their_json(annotation: Any, expected: pl.DataType) -> None:
    assert polars_type(annotation) == expected


@pytest.mark.parametrize("annotation", [int | str, Literal[1, 2], bytes])
def test_an_annotation_without_one_column_type_is_refused(annotation: Any) -> None:
    with pytest.raises(TypeError):
        polars_type(annotation)


def test_a_real_payload_decodes_into_its_derived_schema() -> None:
    payload = e.RecordUnmatched(
        attempt=2,
        side="target",
        record_id="BT1",
        line_number=7,
        amount=-4550,
        currency="EUR",
        occurred_at="2026-11-02T10:00:00+00:00",
        reason="ambiguous",
        candidate_ids=["ch_1", "ch_2"],
        closest_id="ch_1",
        closest_amount=-4500,
    )
    text = json.dumps(payload.model_dump(mode="json"))
    decoded = pl.Series([text]).str.json_decode(pl.Struct(model_schema(e.RecordUnmatched))).struct.unnest()
    assert decoded.row(0, named=True) == payload.model_dump(mode="json")


def test_one_schema_spans_several_models_and_refuses_unknown_or_clashing_fields() -> None:
    schema = union_schema((e.MatchConfirmed, e.MatchRejected), ("match_id", "confirmed_by", "reason"))
    assert schema == {"match_id": pl.String(), "confirmed_by": pl.String(), "reason": pl.String()}
    with pytest.raises(KeyError, match="nope"):
        union_schema((e.MatchConfirmed,), ("nope",))
    with pytest.raises(KeyError, match="nope"):
        model_schema(e.MatchConfirmed, ("nope",))
