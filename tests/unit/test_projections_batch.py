"""Decoding a chunk of the log: typed payload fields, row order kept, older event versions upcast."""

from __future__ import annotations

import json

import polars as pl

from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.projections.batch import IDS
from settler_pipeline.projections.payloads import decode_payloads, upcast_payloads


def test_payload_fields_are_decoded_typed_in_row_order_with_nulls_for_what_is_missing() -> None:
    frame = pl.DataFrame(
        {
            "global_position": [1, 2, 3, 4],
            "event_type": ["A", "B", "A", "A"],
            "data": [
                json.dumps({"n": 1, "ids": ["x", "y"], "s": {"m": 0.5}}),
                json.dumps({"n": 2}),
                json.dumps({"n": "not a number", "extra": True}),
                json.dumps({}),
            ],
        }
    )
    fields = {"n": pl.Int64(), "ids": IDS, "s": pl.Struct({"m": pl.Float64})}
    decoded = decode_payloads(frame, fields, pl.col("event_type") == "A")
    assert decoded.columns == ["global_position", "event_type", "n", "ids", "s"]
    assert decoded["global_position"].to_list() == [1, 3, 4]
    assert decoded["n"].to_list() == [1, None, None]
    assert decoded["ids"].to_list() == [["x", "y"], None, None]
    assert decoded["s"].struct.field("m").to_list() == [0.5, None, None]
    everything = decode_payloads(frame, {"n": pl.Int64()})
    assert everything["n"].to_list() == [1, 2, None, None]


def test_rows_stored_at_an_older_event_version_are_upcast_and_others_left_alone() -> None:
    registry = EventRegistry()
    registry.add_upcaster("RecordUnmatched", 1, lambda d: {"reason": d["why"]})
    frame = pl.DataFrame(
        {
            "event_type": ["RecordUnmatched", "RecordUnmatched", "Other"],
            "event_version": [1, 2, 1],
            "data": [json.dumps({"why": "old"}), json.dumps({"reason": "new"}), json.dumps({"why": "x"})],
        },
        schema_overrides={"event_version": pl.Int32},
    )
    upcast = upcast_payloads(frame, registry)
    assert [json.loads(d) for d in upcast["data"]] == [{"reason": "old"}, {"reason": "new"}, {"why": "x"}]
    assert upcast_payloads(frame.slice(1, 2), registry).equals(frame.slice(1, 2))
