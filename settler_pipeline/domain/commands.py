"""Commands: what a user or a schedule asks Settler to do. Validated here; handled in the application.

Every command names the acting user and tenant (permissions are tenant-scoped) and may carry an
idempotency key: the same command sent twice with the same key produces no new events and returns the
first result.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from settler_pipeline.errors import ValidationError
from settler_pipeline.ids import new_id, validate_uuid

_USER_RE = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")
_KEY_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")


def validate_user(value: str) -> str:
    """A user id: 1-64 letters, digits, '_', '.', '@', '-', after Unicode NFKC normalisation (so a
    full-width or composed look-alike is the same user or refused, never a second one). Surrounding
    whitespace and control characters (``"alice\\n"``) are refused, not stripped."""
    normalised = unicodedata.normalize("NFKC", value) if isinstance(value, str) else value
    if not isinstance(normalised, str) or not _USER_RE.fullmatch(normalised):
        raise ValidationError(
            f"user id must be 1-64 letters, digits, '_', '.', '@' or '-', got {value!r}",
            hint="use a login name such as alice or alice@example.com",
        )
    return normalised


class DateRange(BaseModel):
    """An inclusive range of calendar days (UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.start > self.end:
            raise ValueError(f"date range start {self.start} is after its end {self.end}")
        return self


class Command(BaseModel):
    """Fields every command has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str = Field(default_factory=new_id)
    tenant_id: str
    user_id: str
    correlation_id: str | None = None
    idempotency_key: str | None = None

    @field_validator("tenant_id", "command_id")
    @classmethod
    def _uuid(cls, value: str, info: Any) -> str:
        return validate_uuid(info.field_name, value)

    @field_validator("correlation_id")
    @classmethod
    def _optional_uuid(cls, value: str | None) -> str | None:
        return None if value is None else validate_uuid("correlation_id", value)

    @field_validator("user_id")
    @classmethod
    def _user(cls, value: str) -> str:
        return validate_user(value)

    @field_validator("idempotency_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_RE.fullmatch(value):
            raise ValueError("idempotency_key must be 1-200 letters, digits, '_', '.', ':' or '-'")
        return value


class RunCommand(Command):
    """A command addressed to one reconciliation run."""

    reconciliation_id: str

    @field_validator("reconciliation_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        return validate_uuid("reconciliation_id", value)


class StartReconciliation(RunCommand):
    """Start a run of a job spec over a date range."""

    job_id: str
    source_adapter: str
    target_adapter: str
    date_range: DateRange
    spec: dict[str, Any] = Field(default_factory=dict)  # the job spec as a mapping (as loaded from YAML)
    spec_dir: str | None = None  # where relative paths in the spec resolve
    # Replace live runs of the same job, tenant and days (without it, such a run makes the start fail).
    supersede: bool = False


class RetryReconciliation(RunCommand):
    """Run a failed or cancelled run again (a new attempt, same run id)."""


class SupersedeReconciliation(RunCommand):
    """Mark a live run as replaced by a newer run of the same job, tenant and days."""

    superseded_by: str
    reason: str = Field(default="re-run of the same job, tenant and days", max_length=500)

    @field_validator("superseded_by")
    @classmethod
    def _replacement(cls, value: str) -> str:
        return validate_uuid("superseded_by", value)


class CancelReconciliation(RunCommand):
    """Stop a run that has not finished."""

    reason: str = Field(min_length=1, max_length=500)


class ConfirmMatch(RunCommand):
    """Accept a proposed match."""

    match_id: str


class RejectMatch(RunCommand):
    """Refuse a proposed match; its records become open exceptions again."""

    match_id: str
    reason: str = Field(min_length=1, max_length=500)


class MatchManually(RunCommand):
    """Match open exception records by hand (one or more on each side)."""

    source_ids: list[str] = Field(min_length=1)
    target_ids: list[str] = Field(min_length=1)
    note: str = Field(default="", max_length=500)


class DismissException(RunCommand):
    """Close an exception without a match, with a reason (e.g. a known bank fee)."""

    exception_id: str
    reason: str = Field(min_length=1, max_length=500)
