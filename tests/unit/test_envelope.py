"""The event envelope: validation of ids, names and times, and what makes two envelopes the same event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata, canonical_json
from settler_pipeline.errors import InvalidIdError, ValidationError
from tests.factories import TENANT, MakeEvent, uid

BAD_IDS = [
    "../../etc",
    "x'; DROP TABLE events; --",
    "",
    "0192f0c4-5d3e-7a10-8b2c-1d2e3f40516",  # one digit short
    "{0192f0c4-5d3e-7a10-8b2c-1d2e3f405162}",
    "0192f0c45d3e7a108b2c1d2e3f405162",
    "urn:uuid:0192f0c4-5d3e-7a10-8b2c-1d2e3f405162",
    "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162\n",
]


def _invalid_id(exc: BaseException) -> InvalidIdError:
    """The InvalidIdError raised directly or wrapped by pydantic."""
    if isinstance(exc, InvalidIdError):
        return exc
    assert isinstance(exc, pydantic.ValidationError), exc
    cause = exc.errors()[0].get("ctx", {}).get("error")
    assert isinstance(cause, InvalidIdError), exc.errors()
    return cause


def _envelope(**overrides: Any) -> EventEnvelope:
    metadata = {"tenant_id": TENANT, **overrides.pop("metadata", {})}
    fields: dict[str, Any] = {
        "aggregate_id": uid(1),
        "aggregate_type": "Thing",
        "event_type": "ThingHappened",
        "metadata": EventMetadata(**metadata),
        **overrides,
    }
    return EventEnvelope(**fields)


def test_an_envelope_gets_a_time_ordered_id_and_utc_times_by_default() -> None:
    first, second = _envelope(), _envelope()
    assert uuid.UUID(first.id).version == 7
    assert first.id != second.id
    assert first.created_at.tzinfo is not None and first.created_at.utcoffset() == timedelta(0)
    assert first.metadata.timestamp.utcoffset() == timedelta(0)
    assert uuid.UUID(first.metadata.correlation_id)
    assert first.global_position is None and first.aggregate_version is None
    assert first.tenant_id == TENANT


def test_ids_are_normalised_to_lowercase() -> None:
    upper = "0192F0C4-5D3E-7A10-8B2C-1D2E3F405162"
    envelope = _envelope(
        id=upper, aggregate_id=upper, metadata={"correlation_id": upper, "causation_id": upper}
    )
    assert envelope.id == envelope.aggregate_id == upper.lower()
    assert envelope.metadata.correlation_id == envelope.metadata.causation_id == upper.lower()


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("field", ["id", "aggregate_id"])
def test_a_bad_envelope_id_is_refused_naming_the_field_and_the_value(field: str, bad: str) -> None:
    with pytest.raises((InvalidIdError, pydantic.ValidationError)) as caught:
        _envelope(**{field: bad})
    error = _invalid_id(caught.value)
    assert error.field == field
    assert error.value == bad
    assert field in str(error) and repr(bad) in str(error)


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("field", ["tenant_id", "correlation_id", "causation_id"])
def test_a_bad_metadata_id_is_refused_naming_the_field_and_the_value(field: str, bad: str) -> None:
    metadata: dict[str, Any] = {"tenant_id": TENANT, field: bad}
    with pytest.raises((InvalidIdError, pydantic.ValidationError)) as caught:
        EventMetadata(**metadata)
    error = _invalid_id(caught.value)
    assert error.field == f"metadata.{field}"
    assert error.value == bad
    assert f"metadata.{field}" in str(error) and repr(bad) in str(error)


def test_a_non_string_id_is_refused() -> None:
    with pytest.raises((InvalidIdError, pydantic.ValidationError)):
        _envelope(aggregate_id=12345)


@pytest.mark.parametrize("field", ["timestamp", "created_at"])
def test_naive_datetimes_are_refused(field: str) -> None:
    naive = datetime(2026, 11, 1, 12, 0)
    with pytest.raises((ValidationError, pydantic.ValidationError)) as caught:
        if field == "timestamp":
            EventMetadata(tenant_id=TENANT, timestamp=naive)
        else:
            _envelope(created_at=naive)
    assert "time zone" in str(caught.value)


def test_aware_datetimes_are_stored_in_utc() -> None:
    local = datetime(2026, 11, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    envelope = _envelope(metadata={"timestamp": local}, created_at=local)
    assert envelope.metadata.timestamp == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    assert envelope.metadata.timestamp.tzinfo == UTC
    assert envelope.created_at.tzinfo == UTC


@pytest.mark.parametrize(
    "name",
    ["", "1Thing", "x'; DROP TABLE events; --", "../etc", "Thing Happened", "A" * 101, "Thing/x", "Thing\n"],
)
@pytest.mark.parametrize("field", ["aggregate_type", "event_type"])
def test_type_names_must_be_plain_identifiers(field: str, name: str) -> None:
    with pytest.raises((ValidationError, pydantic.ValidationError)) as caught:
        _envelope(**{field: name})
    assert field in str(caught.value)


@pytest.mark.parametrize("name", ["Thing", "thing.v2", "Record-Matched", "A" * 100, "a_b"])
def test_ordinary_type_names_are_accepted(name: str) -> None:
    assert _envelope(event_type=name).event_type == name


@pytest.mark.parametrize("version", [0, -1])
def test_event_version_must_be_at_least_one(version: int) -> None:
    with pytest.raises(pydantic.ValidationError):
        _envelope(event_version=version)


def test_extra_metadata_keys_are_kept_as_given() -> None:
    extra: dict[str, Any] = {"source": "bank-feed", "attempt": 2}
    metadata = EventMetadata(tenant_id=TENANT, **extra)
    assert metadata.extra_fields() == {"source": "bank-feed", "attempt": 2}
    assert EventMetadata(tenant_id=TENANT).extra_fields() == {}


def test_envelopes_are_immutable(make_event: MakeEvent) -> None:
    envelope = make_event()
    with pytest.raises(pydantic.ValidationError):
        envelope.event_type = "Other"


def test_the_content_key_ignores_store_assigned_fields_and_data_key_order() -> None:
    envelope = _envelope(id=uid(9), data={"a": 1, "b": [1, 2]})
    stored = envelope.model_copy(
        update={
            "global_position": 42,
            "aggregate_version": 7,
            "created_at": datetime(2030, 1, 1, tzinfo=UTC),
            "data": {"b": [1, 2], "a": 1},
        }
    )
    assert stored.content_key() == envelope.content_key()


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"a": 2}},
        {"event_type": "Other"},
        {"aggregate_id": uid(2)},
        {"event_version": 2},
        {"metadata": EventMetadata(tenant_id=TENANT, correlation_id=uid(3), user_id="u")},
    ],
)
def test_the_content_key_changes_with_anything_the_caller_chose(change: dict[str, Any]) -> None:
    envelope = _envelope(id=uid(9), data={"a": 1}, metadata={"correlation_id": uid(3)})
    assert envelope.model_copy(update=change).content_key() != envelope.content_key()


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON_VALUES)
def test_canonical_json_is_the_text_json_dumps_writes_with_sorted_keys(value: Any) -> None:
    """The stored text of every payload: a retried event is the same event only if it matches."""
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def test_a_stored_row_reads_back_as_an_envelope_equal_to_a_validated_one() -> None:
    from datetime import UTC, datetime

    from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
    from settler_pipeline.store.envelopes import row_to_envelope

    now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    ids = ["01a21821-a3f6-77da-9e82-df22000beffd", "01a21821-a3f6-77da-9e82-df22000beffe"]
    row = {
        "event_id": ids[0], "aggregate_id": ids[1], "aggregate_type": "reconciliation", "event_type": "X",
        "event_version": 2, "data": '{"a": [1, 2]}', "tenant_id": ids[1], "user_id": "alice",
        "correlation_id": ids[0], "causation_id": ids[1], "timestamp": now, "created_at": now,
        "global_position": 7, "aggregate_version": 3, "metadata_extra": '{"source": "cli"}',
    }  # fmt: skip
    validated = EventEnvelope(
        id=ids[0],
        aggregate_id=ids[1],
        aggregate_type="reconciliation",
        event_type="X",
        event_version=2,
        data={"a": [1, 2]},
        metadata=EventMetadata(
            tenant_id=ids[1],
            user_id="alice",
            correlation_id=ids[0],
            causation_id=ids[1],
            timestamp=now,
            source="cli",
        ),
        created_at=now,
        global_position=7,
        aggregate_version=3,
    )
    stored = row_to_envelope(row)
    assert stored == validated
    assert stored.model_dump() == validated.model_dump()
    assert stored.metadata.extra_fields() == {"source": "cli"}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_times = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "data": st.dictionaries(st.text(max_size=5), _json_values, max_size=4),
                "user_id": st.none() | st.text(min_size=1, max_size=5),
                "causation_id": st.none() | st.uuids().map(str),
                "timestamp": _times,
                "created_at": _times,
                "extra": st.none()
                | st.dictionaries(st.sampled_from(["source", "host"]), st.text(max_size=4)),
            }
        ),
        max_size=12,
    )
)
def test_a_stored_frame_reads_back_as_the_envelopes_of_its_rows(rows: list[dict[str, Any]]) -> None:
    """The column-wise conversion of a stored frame gives exactly the row-by-row envelopes."""
    from settler_pipeline.store.envelopes import frame_to_envelopes, row_to_envelope, table_to_envelopes
    from settler_pipeline.store.schema import EVENT_SCHEMA, POLARS_SCHEMA

    stored = [
        {
            "global_position": i + 1,
            "aggregate_version": i + 1,
            "event_id": uid(100 + i),
            "aggregate_id": uid(1),
            "aggregate_type": "reconciliation",
            "event_type": "X",
            "event_version": 1 + i % 2,
            "tenant_id": uid(2),
            "user_id": row["user_id"],
            "correlation_id": uid(3),
            "causation_id": row["causation_id"],
            "timestamp": row["timestamp"],
            "created_at": row["created_at"],
            "data": canonical_json(row["data"]),
            "metadata_extra": canonical_json(row["extra"]) if row["extra"] else None,
        }
        for i, row in enumerate(rows)
    ]
    frame = pl.DataFrame(stored, schema=POLARS_SCHEMA)
    envelopes = frame_to_envelopes(frame)
    expected = [row_to_envelope(row) for row in frame.iter_rows(named=True)]
    assert envelopes == expected
    # the Arrow path, with the types Polars writes (large strings) and those of the write-ahead log
    assert table_to_envelopes(frame.to_arrow()) == expected
    assert table_to_envelopes(frame.to_arrow().cast(EVENT_SCHEMA)) == expected
    assert [e.model_dump() for e in envelopes] == [e.model_dump() for e in expected]
    assert all(e.created_at.utcoffset() == timedelta(0) for e in envelopes)


def test_envelopes_built_from_stored_rows_copy_independently() -> None:
    """Envelopes rebuilt from one batch of rows share their fields-set; updating a copy of one (as
    upcasting does) changes neither the original nor its neighbours."""
    from settler_pipeline.store.envelopes import table_to_envelopes
    from settler_pipeline.store.schema import prepare_frame
    from tests.factories import build_frame

    rows = prepare_frame(build_frame(3), now=datetime(2026, 1, 1, tzinfo=UTC))
    first, second, _ = table_to_envelopes(rows.to_arrow())
    changed = first.model_copy(update={"data": {"i": -1}, "event_version": 2})
    assert changed.data == {"i": -1} and changed.event_version == 2
    assert first.data == {"i": 0} and first.event_version == 1
    assert second.model_fields_set == set(type(second).model_fields)
    assert first.model_dump() != changed.model_dump()


_DEFECTS = {
    "none": lambda v: v,
    "upper-case id": lambda v: {**v, "aggregate_id": "ABCDEF00-0000-4000-8000-0000000000AA"},
    "upper-case event id": lambda v: {**v, "event_id": v["event_id"][:-2] + "AB"},
    "bad id": lambda v: {**v, "tenant_id": "not-a-uuid"},
    "bad causation": lambda v: {**v, "causation_id": "x" * 36},
    "null data": lambda v: {**v, "data": None},
    "bad name": lambda v: {**v, "event_type": "9lives"},
    "version 0": lambda v: {**v, "event_version": 0},
    "repeated id": lambda v: {**v, "event_id": uid(999)},
}


@given(defects=st.lists(st.sampled_from(sorted(_DEFECTS)), min_size=0, max_size=6))
def test_the_one_pass_batch_check_agrees_with_the_checks_one_by_one(defects: list[str]) -> None:
    """A batch counts as plainly valid exactly when every check one by one passes and lower-casing its
    ids would change nothing (otherwise the checks one by one run and name the problem)."""
    from settler_pipeline.store import schema

    rows = [
        _DEFECTS[d](
            {
                "event_id": uid(100 + i),
                "aggregate_id": uid(1),
                "aggregate_type": "Thing",
                "event_type": "Happened",
                "event_version": 1,
                "data": "{}",
                "tenant_id": uid(2),
                "user_id": None,
                "correlation_id": uid(3),
                "causation_id": None,
                "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
                "metadata_extra": None,
            }
        )
        for i, d in enumerate(defects)
    ]
    order = schema.REQUIRED_INPUT + schema.OPTIONAL_INPUT
    frame = pl.DataFrame(rows, schema={n: schema.POLARS_SCHEMA[n] for n in order}).select(order)
    try:
        upper = schema._check_ids(frame)
        schema._check_columns(frame)
        passes = not upper
    except (ValidationError, InvalidIdError):
        passes = False
    assert schema._plainly_valid(frame) == passes
