"""Builders for test events: envelopes, columnar batches and deterministic ids."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import polars as pl
import pytest

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.store import limits
from settler_pipeline.store.event_ids import new_ids

TENANT = "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"
OTHER_TENANT = "0192f0c4-5d3e-7a10-8b2c-ffffffffffff"


@contextmanager
def bulk_batches_to_segments() -> Iterator[None]:
    """Within the block a batch of ``BULK_ROWS`` events goes straight to segments (by default only much
    bigger ones do): for tests that place events in segments or the write-ahead tail by batch size."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(limits, "SEGMENT_ROWS", limits.BULK_ROWS)
        yield


def uid(n: int, kind: int = 0) -> str:
    """A deterministic, valid UUID; ``kind`` keeps families of ids (streams, flows, events) apart."""
    return f"{kind:08x}-0000-7000-8000-{n:012x}"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class MakeEvent(Protocol):
    def __call__(
        self,
        aggregate_id: str | None = None,
        event_type: str = ...,
        *,
        aggregate_type: str = ...,
        data: dict[str, Any] | None = None,
        tenant_id: str = ...,
        user_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: str | None = None,
        timestamp: datetime | None = None,
        event_version: int = 1,
        **extra: Any,
    ) -> EventEnvelope: ...


class MakeFrame(Protocol):
    def __call__(
        self,
        n: int,
        *,
        streams: Sequence[str] | None = None,
        event_type: str = ...,
        aggregate_type: str = ...,
        tenant_id: str = ...,
        correlation_id: str | None = None,
        event_ids: Sequence[str] | None = None,
        timestamps: Sequence[datetime] | None = None,
        first: int = 0,
    ) -> pl.DataFrame: ...


_counter = itertools.count(1)


def _next_stream() -> str:
    return uid(next(_counter), kind=0xA)


def build_event(
    aggregate_id: str | None = None,
    event_type: str = "ThingHappened",
    *,
    aggregate_type: str = "Thing",
    data: dict[str, Any] | None = None,
    tenant_id: str = TENANT,
    user_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: str | None = None,
    timestamp: datetime | None = None,
    event_version: int = 1,
    **extra: Any,
) -> EventEnvelope:
    """An envelope with sensible defaults; every argument can be overridden."""
    metadata: dict[str, Any] = {"tenant_id": tenant_id, "user_id": user_id, "causation_id": causation_id}
    if correlation_id is not None:
        metadata["correlation_id"] = correlation_id
    if timestamp is not None:
        metadata["timestamp"] = timestamp
    envelope: dict[str, Any] = {
        "aggregate_id": aggregate_id if aggregate_id is not None else _next_stream(),
        "aggregate_type": aggregate_type,
        "event_type": event_type,
        "event_version": event_version,
        "data": data if data is not None else {"n": next(_counter)},
        "metadata": EventMetadata(**metadata, **extra),
    }
    if event_id is not None:
        envelope["id"] = event_id
    return EventEnvelope(**envelope)


def build_frame(
    n: int,
    *,
    streams: Sequence[str] | None = None,
    event_type: str = "RecordMatched",
    aggregate_type: str = "Record",
    tenant_id: str = TENANT,
    correlation_id: str | None = None,
    event_ids: Sequence[str] | None = None,
    timestamps: Sequence[datetime] | None = None,
    first: int = 0,
) -> pl.DataFrame:
    """A columnar batch of ``n`` events over ``streams`` (round robin), each with ``{"i": first + k}``
    as data and its own event id."""
    streams = list(streams) if streams is not None else [_next_stream()]
    columns: dict[str, Any] = {
        "event_id": list(event_ids) if event_ids is not None else new_ids(n).to_list(),
        "aggregate_id": [streams[k % len(streams)] for k in range(n)],
        "aggregate_type": [aggregate_type] * n,
        "event_type": [event_type] * n,
        "data": [json.dumps({"i": first + k}) for k in range(n)],
        "tenant_id": [tenant_id] * n,
        "correlation_id": [correlation_id or uid(1, kind=0xC)] * n,
    }
    if timestamps is not None:
        columns["timestamp"] = pl.Series(list(timestamps), dtype=pl.Datetime("us", "UTC"))
    return pl.DataFrame(columns)
