"""The event envelope: what every event in the log looks like, whatever its type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from settler_pipeline.errors import ValidationError
from settler_pipeline.ids import new_id, validate_uuid

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (all Settler times are UTC)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is refused because its zone would be a guess."""
    if value.tzinfo is None:
        raise ValidationError(
            f"timestamp {value.isoformat()} has no time zone",
            hint="pass timezone-aware datetimes (Settler stores every time in UTC)",
        )
    return value.astimezone(UTC)


@dataclass(frozen=True)
class EventContext:
    """Who and what every event of one batch is about: the stream, its tenant, the acting user, the
    flow (correlation) and cause it belongs to, and when it happened (UTC)."""

    aggregate_id: str
    tenant_id: str
    user_id: str | None
    correlation_id: str | None
    causation_id: str | None
    timestamp: datetime


def validate_name(field: str, value: str) -> str:
    """Validate a type name (aggregate or event type) that reaches SQL parameters and file metadata."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValidationError(
            f"{field} must be 1-100 characters of letters, digits, '_', '.', '-' starting with a letter, "
            f"got {value!r}"
        )
    return value


class EventMetadata(BaseModel):
    """Who caused an event, when, and in which flow; extra keys are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    tenant_id: str
    user_id: str | None = None
    timestamp: datetime = Field(default_factory=utc_now)
    correlation_id: str = Field(default_factory=new_id)
    causation_id: str | None = None

    @field_validator("tenant_id", "correlation_id")
    @classmethod
    def _uuid(cls, value: str, info: Any) -> str:
        return validate_uuid(f"metadata.{info.field_name}", value)

    @field_validator("causation_id")
    @classmethod
    def _optional_uuid(cls, value: str | None) -> str | None:
        return None if value is None else validate_uuid("metadata.causation_id", value)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    def extra_fields(self) -> dict[str, Any]:
        """The caller-supplied keys beyond the standard ones."""
        return dict(self.model_extra or {})


class EventEnvelope(BaseModel):
    """One event. ``global_position`` and ``aggregate_version`` are assigned by the store on append
    and are ``None`` on an envelope that has not been stored yet."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id)
    aggregate_id: str
    aggregate_type: str
    event_type: str
    event_version: int = Field(default=1, ge=1)
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: EventMetadata
    created_at: datetime = Field(default_factory=utc_now)
    global_position: int | None = None
    aggregate_version: int | None = None

    @field_validator("id")
    @classmethod
    def _event_id(cls, value: str) -> str:
        return validate_uuid("id", value)

    @field_validator("aggregate_id")
    @classmethod
    def _aggregate_id(cls, value: str) -> str:
        return validate_uuid("aggregate_id", value)

    @field_validator("aggregate_type", "event_type")
    @classmethod
    def _names(cls, value: str, info: Any) -> str:
        return validate_name(info.field_name, value)

    @field_validator("created_at")
    @classmethod
    def _created_utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @property
    def tenant_id(self) -> str:
        return self.metadata.tenant_id

    def content_key(self) -> tuple[Any, ...]:
        """What makes two envelopes with the same id "the same event" for idempotent retries: everything
        the caller chose (store-assigned positions and versions excluded)."""
        return (
            self.id,
            self.aggregate_id,
            self.aggregate_type,
            self.event_type,
            self.event_version,
            canonical_json(self.data),
            self.metadata.tenant_id,
            self.metadata.user_id,
            self.metadata.correlation_id,
            self.metadata.causation_id,
            canonical_json(self.metadata.extra_fields()) if self.metadata.extra_fields() else None,
        )


# The C encoder behind json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str), built
# once: JSONEncoder.encode builds a new one (and a Python generator around it) on every call, half
# the cost of encoding a small payload. The output is the same text byte for byte; without the
# encoder's cycle check, a payload that contains itself fails with RecursionError (a ValueError
# before), which no JSON document can do.
_encode_object = c_make_encoder(
    None,  # markers: no cycle check (see above)
    str,  # default: a value JSON has no type for is written as its str()
    encode_basestring_ascii,
    None,  # indent
    ":",
    ",",
    True,  # sort_keys
    False,  # skipkeys
    True,  # allow_nan
)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal payloads compare equal as strings."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    return "".join(_encode_object(value, 0))
