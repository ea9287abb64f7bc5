"""Envelopes rebuilt from stored rows (a Polars frame, an Arrow table or one row as a dict).

The rows were validated when they were written, so the envelopes are built without validation, the
way ``model_construct`` builds them, and column by column: one JSON parse for all payloads of a batch
of rows and each distinct time (a batch shares its commit time, often its event time) converted once
from its integer microseconds. Loading a stream builds two model instances per event; this is what
keeps that cheap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
from pydantic import BaseModel
from pydantic_core import from_json

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata

_M = TypeVar("_M", bound=BaseModel)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = pa.timestamp("us", tz="UTC")
_set = object.__setattr__  # bound once: a load builds two instances per event
_new = object.__new__
# pydantic's slots, set through their descriptors (no attribute lookup by name)
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_ENVELOPE_FIELDS = frozenset(EventEnvelope.model_fields)
_METADATA_FIELDS = frozenset(EventMetadata.model_fields)
# the columns the envelopes are built from, in the order ``_build`` takes them
_STRINGS = ("event_id", "aggregate_id", "aggregate_type", "event_type", "tenant_id", "user_id")
_MORE = ("correlation_id", "causation_id", "metadata_extra", "event_version", "global_position")


def _trusted(cls: type[_M], fields: dict[str, Any], extra: dict[str, Any] | None) -> _M:
    """An instance of a pydantic model from values already validated when they were stored, set the
    way ``model_construct`` sets them but without its per-field default handling (every field is
    given)."""
    instance = cls.__new__(cls)
    _set(instance, "__dict__", fields)
    _set(instance, "__pydantic_fields_set__", set(fields))
    _set(instance, "__pydantic_extra__", extra)
    _set(instance, "__pydantic_private__", None)
    return instance


def row_to_envelope(row: dict[str, Any]) -> EventEnvelope:
    """Rebuild an envelope from one stored row (a dict of the stored columns)."""
    extra = json.loads(row["metadata_extra"]) if row.get("metadata_extra") else {}
    metadata = _trusted(
        EventMetadata,
        {
            "tenant_id": row["tenant_id"],
            "user_id": row["user_id"],
            "timestamp": _utc(row["timestamp"]),
            "correlation_id": row["correlation_id"],
            "causation_id": row["causation_id"],
        },
        extra,
    )
    return _trusted(
        EventEnvelope,
        {
            "id": row["event_id"],
            "aggregate_id": row["aggregate_id"],
            "aggregate_type": row["aggregate_type"],
            "event_type": row["event_type"],
            "event_version": int(row["event_version"]),
            "data": json.loads(row["data"]),
            "metadata": metadata,
            "created_at": _utc(row["created_at"]),
            "global_position": int(row["global_position"]),
            "aggregate_version": int(row["aggregate_version"]),
        },
        None,
    )


def frame_to_envelopes(frame: pl.DataFrame) -> list[EventEnvelope]:
    """Every row of a stored-events frame as an envelope, in the frame's order (the same envelopes
    :func:`row_to_envelope` builds)."""
    if frame.height == 0:
        return []
    column = frame.get_column
    return _build(
        [column(name).to_list() for name in (*_STRINGS, *_MORE, "aggregate_version", "data")],
        column("timestamp").dt.cast_time_unit("us").to_physical().to_list(),
        column("created_at").dt.cast_time_unit("us").to_physical().to_list(),
    )


def table_to_envelopes(table: pa.Table) -> list[EventEnvelope]:
    """Every row of a stored-events Arrow table as an envelope, in the table's order (the same
    envelopes :func:`row_to_envelope` builds). Through NumPy: an Arrow column becomes Python values
    several times faster that way than with ``to_pylist``, and no Polars frame is needed."""
    if table.num_rows == 0:
        return []

    def values(name: str) -> list[Any]:
        return table.column(name).to_numpy(zero_copy_only=False).tolist()  # type: ignore[no-any-return]

    def micros(name: str) -> list[int]:
        times = table.column(name)
        if times.type != _MICROS:
            times = times.cast(_MICROS)
        # datetime64[us] viewed as its integers: no cast kernel (the times are never null)
        return times.to_numpy().view("int64").tolist()  # type: ignore[no-any-return]

    return _build(
        [values(name) for name in (*_STRINGS, *_MORE, "aggregate_version", "data")],
        micros("timestamp"),
        micros("created_at"),
    )


def _build(columns: Sequence[list[Any]], timestamps: list[int], created: list[int]) -> list[EventEnvelope]:
    """The envelopes of rows given column by column (``_STRINGS``, ``_MORE``, aggregate version and
    data, then the two times as integer microseconds)."""
    *columns, data = columns
    payloads = _parse_list(data)
    times = {m: _EPOCH + timedelta(microseconds=m) for m in {*timestamps, *created}}
    # One fields-set per model for the whole batch: every field is set, the models are frozen, and
    # pydantic copies the set before changing it (model_copy), so sharing it is safe; the slots are
    # set through their descriptors. The events of one commit share their metadata (tenant, user,
    # time, flow, cause): equal metadata without extra keys is built once and shared, as a frozen
    # model can be (its extra keys, a dict, are never shared).
    metadata_set, envelope_set = set(_METADATA_FIELDS), set(_ENVELOPE_FIELDS)
    new, loads, metadata_model, envelope_model = _new, json.loads, EventMetadata, EventEnvelope
    shared: dict[tuple[Any, ...], EventMetadata] = {}
    out: list[EventEnvelope] = []
    append = out.append
    for (
        event_id,
        aggregate_id,
        aggregate_type,
        event_type,
        tenant_id,
        user_id,
        correlation_id,
        causation_id,
        extra,
        event_version,
        position,
        version,
        payload,
        timestamp,
        created_at,
    ) in zip(*columns, payloads, timestamps, created, strict=True):
        key = (tenant_id, user_id, timestamp, correlation_id, causation_id)
        metadata = None if extra else shared.get(key)
        if metadata is None:
            metadata = new(metadata_model)
            _set(
                metadata,
                "__dict__",
                {
                    "tenant_id": tenant_id,
                    "user_id": user_id,
                    "timestamp": times[timestamp],
                    "correlation_id": correlation_id,
                    "causation_id": causation_id,
                },
            )
            _set_fields(metadata, metadata_set)
            _set_extra(metadata, loads(extra) if extra else {})
            _set_private(metadata, None)
            if not extra:
                shared[key] = metadata
        envelope = new(envelope_model)
        _set(
            envelope,
            "__dict__",
            {
                "id": event_id,
                "aggregate_id": aggregate_id,
                "aggregate_type": aggregate_type,
                "event_type": event_type,
                "event_version": event_version,
                "data": payload,
                "metadata": metadata,
                "created_at": times[created_at],
                "global_position": position,
                "aggregate_version": version,
            },
        )
        _set_fields(envelope, envelope_set)
        _set_extra(envelope, None)
        _set_private(envelope, None)
        append(envelope)
    return out


def _parse_list(documents: list[str]) -> list[Any]:
    """The JSON documents ``documents`` parsed, in one call: pydantic's JSON parser is ~1.5x faster
    than the standard library's on a stream's payloads; the standard library's takes what it refuses
    (a lone surrogate escape) and gives the same values otherwise."""
    text = "[" + ",".join(documents) + "]"
    try:
        return from_json(text)  # type: ignore[no-any-return]
    except ValueError:
        return json.loads(text)  # type: ignore[no-any-return]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
