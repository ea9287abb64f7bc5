"""Payload fields are typed columns of the segments and of the published Delta table: filled from the
JSON when a batch does not bring them, taken as given when it does, absent (null) in files written
before they existed, and never in the way of unknown or older events."""

from __future__ import annotations

import json
import shutil
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.expr.string import ExprStringNameSpace

from settler_pipeline.domain import events as e
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.errors import ValidationError
from settler_pipeline.projections.batch import EventBatch
from settler_pipeline.store import limits, maintenance, payloads, segments, table
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from settler_pipeline.store.memory import InMemoryEventLog
from settler_pipeline.store.payloads import PAYLOAD_SCHEMA, TYPED
from settler_pipeline.store.schema import COLUMNS, EVENT_SCHEMA
from tests.factories import uid, utc

RUN = uid(7)
FIELDS = ["attempt", "match_id", "amount", "currency", "confidence", "source_ids", "summary"]


def matched(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "attempt": 1,
            "match_id": f"m{offset + i}",
            "rule": "exact",
            "match_type": "one_to_one",
            "source_ids": [f"s{offset + i}"],
            "target_ids": [f"t{offset + i}"],
            "amount": 100 + i,
            "target_amount": 100 + i,
            "amount_difference": 0,
            "currency": "EUR",
            "confidence": 0.5,
            "matched_fields": ["amount"],
            "date_difference_days": 0,
        }
        for i in range(n)
    ]


def frame_of(event_type: str, payloads: list[dict[str, Any]], *, version: int = 1) -> pl.DataFrame:
    n = len(payloads)
    return pl.DataFrame(
        {
            "aggregate_id": [RUN] * n,
            "aggregate_type": [e.AGGREGATE_TYPE] * n,
            "event_type": [event_type] * n,
            "event_version": [version] * n,
            "data": [json.dumps(p) for p in payloads],
            "tenant_id": [uid(1)] * n,
            "correlation_id": [uid(2)] * n,
            "timestamp": [utc(2026, 11, 2, 9)] * n,
        },
        schema_overrides={"event_version": pl.Int32},
    )


def completed() -> dict[str, Any]:
    summary = dict.fromkeys(e.Summary.model_fields, 1) | {"match_rate": 0.5}
    return {"attempt": 1, "summary": summary}


@pytest.fixture(autouse=True)
def bulk_batches_go_to_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SEGMENT_ROWS", BULK_ROWS)


def typed(store: EventStore) -> pl.DataFrame:
    return store.read(payload_fields=FIELDS).collect()


def with_typed(payloads: list[dict[str, Any]]) -> pl.DataFrame:
    """A RecordMatched batch that brings its typed payload columns, as a run's batches do."""
    columns = pl.DataFrame(payloads).with_columns(
        pl.lit(None, pl.String).alias("source_records"), pl.lit(None, pl.String).alias("target_records")
    )
    return pl.concat([frame_of(e.RECORD_MATCHED, payloads), columns], how="horizontal").with_columns(
        pl.lit(True).alias(TYPED)
    )


def test_segments_hold_the_payload_fields_typed_as_the_payload_models_say(store: EventStore) -> None:
    store.append_frame(with_typed(matched(BULK_ROWS)))
    store.append_frame(frame_of(e.RECORD_MATCHED, matched(BULK_ROWS, offset=BULK_ROWS)))  # JSON only
    store.append_frame(frame_of(e.RECONCILIATION_COMPLETED, [completed()]))  # waits in the tail
    rows = typed(store)
    assert rows[TYPED].to_list() == [True] * BULK_ROWS + [False] * BULK_ROWS + [None]
    assert rows.schema["source_ids"] == pl.List(pl.String)
    assert rows.schema["summary"] == PAYLOAD_SCHEMA["summary"]
    first = rows.row(0, named=True)
    assert (first["match_id"], first["amount"], first["currency"], first["source_ids"]) == (
        "m0",
        100,
        "EUR",
        ["s0"],
    )
    store.publish()  # moves the tail into a segment: the store types it from its JSON
    rows = typed(store)
    assert rows[TYPED].to_list() == [True] * BULK_ROWS + [False] * BULK_ROWS + [True]
    assert rows["summary"][-1]["match_rate"] == 0.5 and rows["attempt"][-1] == 1
    # a segment holds the payload columns its events use, with the types the models give them
    path = store.segments_dir / store.current_view().manifest.segments[0].path
    file_schema = pl.read_parquet_schema(path)
    matched_fields = set(e.RecordMatched.model_fields) - {"source_records", "target_records"}  # all null
    assert {name for name in file_schema if name in PAYLOAD_SCHEMA} == matched_fields
    assert all(file_schema[name] == PAYLOAD_SCHEMA[name] for name in matched_fields)
    assert maintenance.compact(store).retired, "the three segments merge"
    rows = typed(store)  # compaction typed the JSON-only batch from its JSON
    assert rows[TYPED].all() and rows["match_id"][BULK_ROWS] == f"m{BULK_ROWS}"


def test_unknown_types_older_versions_and_payloads_that_do_not_fit_keep_their_json(store: EventStore) -> None:
    odd = [{"attempt": "one", "match_id": 5}]  # a RecordMatched whose fields have other types
    batch = pl.concat(
        [
            frame_of("SomethingNew", [{"amount": "x", "whatever": [1]}] * 3),
            frame_of(e.RECORD_MATCHED, matched(1)),
            frame_of(e.RECORD_MATCHED, matched(1), version=2),
            frame_of(e.RECORD_MATCHED, odd),
            frame_of(e.RECORD_MATCHED, matched(3, offset=10)),
        ]
    )
    store.append_frame(batch)  # small: the write-ahead tail, typed when it moves into a segment
    store.publish()
    rows = typed(store)
    assert rows["data"].to_list() == batch["data"].to_list(), "every payload's text is kept as written"
    flags = rows[TYPED].to_list()
    assert flags[:3] == [False] * 3, "unknown type"
    assert flags[3:] == [True, False, False, True, True, True], "known; newer version; does not fit; known"
    assert rows["match_id"][3] == "m0" and rows["match_id"][5] is None


def test_a_batch_may_bring_its_typed_columns_and_they_are_checked(store: EventStore) -> None:
    payloads = matched(BULK_ROWS)
    given = with_typed(payloads)
    store.append_frame(given)
    rows = typed(store)
    assert rows[TYPED].all() and rows["amount"].to_list() == [p["amount"] for p in payloads]
    with pytest.raises(ValidationError, match=r"lack the payload column\(s\) target_records"):
        store.append_frame(given.drop("target_records"))
    with pytest.raises(ValidationError, match="payload_typed"):
        store.append_frame(given.drop(TYPED))
    with pytest.raises(ValidationError, match="wrong type"):
        store.append_frame(given.with_columns(pl.lit("a lot").alias("amount")))
    with pytest.raises(ValidationError, match="SomethingNew version 1 has no typed"):
        store.append_frame(given.with_columns(pl.lit("SomethingNew").alias("event_type")))
    assert store.head_position == BULK_ROWS, "a refused batch writes nothing"


def test_a_flushed_tail_keeps_the_columns_its_batches_brought_and_types_the_rest(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "WAL_FLUSH_ROWS", 30)
    decoded: list[int] = []
    decode = payloads._decode  # counting the rows typed from their JSON

    def counting(rows: pl.DataFrame, model: type[e.EventData]) -> pl.DataFrame | None:
        decoded.append(rows.height)
        return decode(rows, model)

    monkeypatch.setattr(payloads, "_decode", counting)
    store.append_frame(with_typed(matched(10)))  # the tail, with its typed columns
    store.append_frame(frame_of(e.RECORD_MATCHED, matched(5, offset=10)))  # the tail, JSON only
    assert decoded == [] and store.current_view().tail.rows == 15
    store.append_frame(frame_of(e.RECORD_MATCHED, matched(15, offset=15)))  # fills the tail: flushed
    assert store.current_view().tail.rows == 0
    assert sum(decoded) == 5 + 15, "the rows that came as JSON are typed from it, and only those"
    rows = typed(store)
    assert rows[TYPED].to_list() == [True] * 30, "the batch that filled the tail is typed like the tail"
    assert rows["match_id"].to_list() == [f"m{i}" for i in range(30)]
    assert rows["source_ids"].to_list() == [[f"s{i}"] for i in range(30)]


def test_a_log_and_table_written_before_typed_columns_stay_readable_and_gain_them(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:  # the writer as it was: envelope columns only
        old.setattr(segments, "with_payload_columns", lambda frame, **_: frame.select(COLUMNS))
        old.setattr(table, "TABLE_SCHEMA", EVENT_SCHEMA.append(table.TABLE_SCHEMA.field(table.PARTITION)))
        # the empty table as that writer created it, before the typed columns
        shutil.rmtree(store.segments_dir / table.LOG_FOLDER)
        table.commit(store.segments_dir, store.current_view().manifest)
        store.append_frame(with_typed(matched(BULK_ROWS)))
        store.publish()
    assert "amount" not in DeltaTable(store.table_uri).schema().to_arrow().names
    store.append_frame(with_typed(matched(BULK_ROWS, offset=BULK_ROWS)))
    rows = typed(store)
    assert rows[TYPED].to_list() == [None] * BULK_ROWS + [True] * BULK_ROWS
    assert rows["match_id"][BULK_ROWS] == f"m{BULK_ROWS}"
    head = store.publish()
    delta = DeltaTable(store.table_uri)
    assert "amount" in delta.schema().to_arrow().names
    assert table.published_head(store.segments_dir) == head
    by_polars = (
        pl.scan_delta(store.table_uri).select("global_position", "amount").collect().sort("global_position")
    )
    assert by_polars["amount"].null_count() == BULK_ROWS
    con = duckdb.connect()
    try:
        by_duckdb = con.sql(
            "SELECT count(amount) FROM read_parquet($1::VARCHAR[], union_by_name = true)",
            params=[delta.file_uris()],
        ).fetchall()
    finally:
        con.close()
    assert by_duckdb == [(BULK_ROWS,)]
    maintenance.compact(store)  # merging the old file with the new one types the old rows
    rows = typed(store)
    assert rows[TYPED].all() and rows["amount"].to_list() == [100 + i for i in range(BULK_ROWS)] * 2
    assert maintenance.verify(store).ok


def test_the_in_memory_log_takes_typed_batches_and_keeps_the_envelope_columns() -> None:
    log = InMemoryEventLog()
    log.append_frame(with_typed(matched(3)))
    rows = log.read().collect()
    assert rows.columns == list(COLUMNS) and rows["data"].str.json_decode()[0]["match_id"] == "m0"


def test_read_models_upcast_events_whose_typed_columns_hold_an_older_version(
    store: EventStore, registry: EventRegistry
) -> None:
    store.append_frame(with_typed(matched(BULK_ROWS)))  # typed as RecordMatched v1
    registry.register(e.RECORD_MATCHED, 1)
    before = EventBatch.read(store, 0, store.head_position).matched
    assert before["amount"].to_list() == [100 + i for i in range(BULK_ROWS)], (
        "current: typed columns as stored"
    )

    def cents_to_tenths(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "amount": data["amount"] * 10}

    registry.add_upcaster(e.RECORD_MATCHED, 1, cents_to_tenths)  # RecordMatched is now at version 2
    after = EventBatch.read(store, 0, store.head_position).matched
    assert after["amount"].to_list() == [10 * (100 + i) for i in range(BULK_ROWS)], (
        "read through the upcaster"
    )
    assert after["match_id"].to_list() == before["match_id"].to_list()


_ROW_KINDS = {
    "fits": ("RecordMatched", '{{"amount": {i}, "currency": "EUR", "match_id": "m{i}"}}'),
    "fits loosely": ("RecordMatched", '{{"amount": {i}.5, "source_ids": "s{i}", "attempt": true}}'),
    "does not fit": ("RecordMatched", '{{"amount": "five", "match_id": "m{i}"}}'),
    "list item does not fit": ("RecordMatched", '{{"amount": {i}, "source_ids": [["s{i}"]]}}'),
    "nested field does not fit": (
        "ReconciliationCompleted",
        '{{"attempt": 1, "summary": {{"match_rate": "x"}}}}',
    ),
    "not an object": ("RecordMatched", "[{i}]"),
    "other type": ("RecordUnmatched", '{{"amount": {i}, "reason": "r"}}'),
    "unknown type": ("SomethingElse", '{{"amount": {i}}}'),
}


@settings(max_examples=40, deadline=None)
@given(kinds=st.lists(st.sampled_from(sorted(_ROW_KINDS)), min_size=1, max_size=12))
def test_typing_a_batch_types_each_row_as_typing_it_alone_would(kinds: list[str]) -> None:
    """Whatever the mix of rows (one type or several, payloads that fit or not, unknown types), the
    batch comes back in its order with each row's typed columns exactly those the row gets alone."""
    from datetime import UTC, datetime

    from settler_pipeline.store.batch import number_batch
    from settler_pipeline.store.payloads import with_payload_columns
    from settler_pipeline.store.schema import prepare_frame
    from tests.factories import build_frame

    frame = build_frame(len(kinds)).with_columns(
        pl.Series("event_type", [_ROW_KINDS[k][0] for k in kinds]),
        pl.Series("data", [_ROW_KINDS[k][1].format(i=i) for i, k in enumerate(kinds)]),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stored = number_batch(prepare_frame(frame, now=now), head=0, created_at=now, versions={})
    whole = with_payload_columns(stored)
    assert whole["global_position"].to_list() == list(range(1, len(kinds) + 1))
    for i in range(len(kinds)):
        alone = with_payload_columns(stored.slice(i, 1))
        row = whole.slice(i, 1)
        for name in alone.columns:
            assert row[name].to_list() == alone[name].to_list(), (kinds[i], name)
        for name in set(row.columns) - set(alone.columns):
            assert row[name].to_list() == [None], (kinds[i], name)
    assert whole[TYPED].to_list() == [k in ("fits", "fits loosely", "other type") for k in kinds]


def test_a_flushed_tail_of_payloads_that_do_not_fit_is_typed_in_a_few_decoder_calls(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many payloads of a batch do not fit their model, typing it asks the JSON decoder a
    bounded number of times (finding the misfits by probing the decoder costs ~0.5 ms a probe, seconds
    for a tail), and the rows come out as each would alone: fitting ones typed, misfits untyped with
    their JSON as written."""
    n = 3000
    good = matched(n)
    bad = {i for i in range(n) if i % 7 == 3 or i % 11 == 5}
    for i in bad:
        good[i] = {**good[i], "amount": f"{i} EUR"} if i % 2 else {**good[i], "source_ids": {"id": i}}
    batch = frame_of(e.RECORD_MATCHED, good)
    monkeypatch.setattr(limits, "SEGMENT_ROWS", 2 * n)
    store.append_frame(batch)  # small enough for the write-ahead tail
    assert store.current_view().tail.rows == n
    calls: list[pl.DataType | None] = []
    decode = ExprStringNameSpace.json_decode

    def counting(self: ExprStringNameSpace, dtype: Any = None, **kwargs: Any) -> pl.Expr:
        calls.append(dtype)
        return decode(self, dtype, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ExprStringNameSpace, "json_decode", counting)
        store.publish()  # the tail moves into a segment, typed from its JSON
    assert 1 < len(calls) <= 3, f"{len(calls)} decoder calls to type {n} payloads ({len(bad)} misfits)"
    rows = typed(store)
    assert rows["data"].to_list() == batch["data"].to_list(), "every payload's text is kept as written"
    assert rows[TYPED].to_list() == [i not in bad for i in range(n)]
    assert rows["amount"].to_list() == [None if i in bad else 100 + i for i in range(n)]
    assert rows["source_ids"].to_list() == [None if i in bad else [f"s{i}"] for i in range(n)]
