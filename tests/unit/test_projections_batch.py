"""Decoding a chunk of the log: typed payload fields, row order kept, older event versions upcast."""

from __future__ import annotations

import json
from unittest.mock import patch

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.projections import payloads
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


def test_a_batch_with_matches_read_as_sums_is_cut_only_at_its_ends() -> None:
    from datetime import UTC, datetime

    import pytest

    from settler_pipeline.projections.batch import LOGGED_SCHEMA, EventBatch

    at = datetime(2026, 11, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "global_position": [3, 9],
            "reconciliation_id": ["r1", "r2"],
            "event_type": ["ReconciliationStarted", "ReconciliationStarted"],
            "tenant_id": ["t", "t"],
            "timestamp": [at, at],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    batch = EventBatch(events, after=0, upto=10)
    batch.__dict__["logged"] = pl.DataFrame(
        {
            "reconciliation_id": ["r1"],
            "tenant_id": ["t"],
            "attempt": [1],
            "currency": ["EUR"],
            "rows": [5],
            "sources": [6],
            "last_position": [8],
            "max_timestamp": [at],
        },
        schema=LOGGED_SCHEMA,
    )
    assert batch.height == 7
    assert batch.last_positions.sort("reconciliation_id")["last_position"].to_list() == [8, 9]
    assert batch.since(0) is batch
    after = batch.since(10)
    assert after.height == 0
    assert after.logged.height == 0
    with pytest.raises(ValueError, match="cannot be cut at 5"):
        batch.since(5)
    without = EventBatch(events, after=0, upto=10)
    assert without.since(5).events["global_position"].to_list() == [9]


_VALUES = {
    "n": st.one_of(st.none(), st.integers(-(2**62), 2**62)),
    "x": st.one_of(st.none(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False)),
    "s": st.one_of(st.none(), st.text(max_size=8)),
    "ids": st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=3)),
    "sub": st.one_of(
        st.none(),
        st.fixed_dictionaries({}, optional={"m": st.integers(0, 9), "t": st.text(max_size=3)}),
    ),
    "flag": st.one_of(st.none(), st.booleans()),
}
_FIELDS = {
    "n": pl.Int64(),
    "x": pl.Float64(),
    "s": pl.String(),
    "ids": IDS,
    "sub": pl.Struct({"m": pl.Int64, "t": pl.String}),
    "flag": pl.Boolean(),
    "absent": pl.String(),
}


# Documents with a field of another type than its column's (a foreign or hand-written payload): each
# parser would read them its own way (1.5 in an integer field, 2.0 in a text field, a scalar where a
# list belongs), so a small batch holding one must be parsed as a large one is.
_MISTYPED = st.sampled_from(
    [
        {"n": "not a number"},
        {"n": 1.5},
        {"sub": {"m": 1.7}},
        {"s": 2.0},
        {"s": 1e300},
        {"s": True},
        {"ids": "a"},
        {"ids": 1},
        {"ids": True},
        {"flag": 1},
        {"sub": "x"},
        {"n": [1]},
    ]
)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.fixed_dictionaries({}, optional=_VALUES), max_size=12),
    st.lists(_MISTYPED, max_size=2, unique_by=lambda d: str(sorted(d))),  # type: ignore[call-overload]
)
def test_few_documents_decode_as_many_do(
    documents: list[dict[str, object]], bad: list[dict[str, object]]
) -> None:
    """A batch small enough for Polars' parser gets the values DuckDB's gives a large one, also when
    a document has a field of another type (then DuckDB parses the small batch too)."""
    # a field is mistyped in every document of the batch that has it (a field mixing types across a
    # batch infers as their common type, which the check cannot see: Settler's own payloads never mix)
    touched = {key for b in bad for key in b}
    documents = [{k: v for k, v in d.items() if k not in touched} for d in documents]
    texts = [json.dumps(d) for d in documents + bad]
    frame = pl.DataFrame({"global_position": list(range(len(texts))), "data": texts})
    frame = frame.cast({"data": pl.String})
    few = decode_payloads(frame, _FIELDS)
    with patch.object(payloads, "SMALL_DOCUMENTS", -1):
        many = decode_payloads(frame, _FIELDS)
    assert few.schema == many.schema
    assert few.to_dicts() == many.to_dicts()
