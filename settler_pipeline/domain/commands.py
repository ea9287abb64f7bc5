"""Commands: what a user or a schedule asks Settler to do. Validated here; handled in the application.

Every command names the acting user and tenant (permissions are tenant-scoped) and may carry an
idempotency key: the same command sent twice with the same key produces no new events and returns the
first result.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from settler_pipeline.errors import FieldError, ValidationError
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


Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
"""Why a decision was taken: blank (spaces only) is no reason."""

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)


class DateRange(BaseModel):
    """An inclusive range of calendar days (UTC) between 1900-01-01 and 2999-12-31."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        # Our own errors (not ValueError) so they surface as they are, not wrapped by pydantic.
        if self.start > self.end:
            raise ValidationError(
                f"date range start {self.start} is after its end {self.end}",
                hint="give a start on or before the end (--from on or before --to; both days are included)",
            )
        if self.start < FIRST_DAY or self.end > LAST_DAY:
            # a run's inputs are read with a margin of days around the range, which must stay dates
            raise ValidationError(
                f"date range {self.start}..{self.end} reaches outside {FIRST_DAY}..{LAST_DAY}",
                hint="reconcile the days your data covers",
            )
        return self

    @property
    def days(self) -> int:
        """Number of calendar days in the range, both ends included."""
        return (self.end - self.start).days + 1

    def widened(self, margin_days: int) -> DateRange:
        """The range extended by ``margin_days`` on both sides (the settlement-lag margin used to read
        inputs). The widened range may reach past the bounds a run's own range keeps to."""
        if margin_days < 0:
            raise ValidationError(f"margin_days must be >= 0, got {margin_days}", hint="use 0 for no margin")
        # Built without validation: widening an ordered range keeps it ordered, and the bounds above
        # exist precisely so that this margin stays inside what a date can hold.
        return DateRange.model_construct(
            start=self.start - timedelta(days=margin_days), end=self.end + timedelta(days=margin_days)
        )

    def contains(self, day: date) -> bool:
        """Whether ``day`` lies in the range (ends included)."""
        return self.start <= day <= self.end


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
    spec_path: str | None = None  # the file it was read from (a retry reads it again)


class RetryReconciliation(RunCommand):
    """Run a failed or cancelled run again (a new attempt, same run id), with the job spec read again
    (``spec``) or, without one, the spec the run was started with."""

    spec: dict[str, Any] | None = None
    spec_dir: str | None = None
    spec_path: str | None = None


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

    reason: Reason


class _ReviewCommand(RunCommand):
    """A review decision on one or more items of a run, listed in the field named by ``ITEMS``; the
    singular (``match_id=<id>`` for ``match_ids``) is accepted for one item."""

    ITEMS: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        one = cls.ITEMS.removesuffix("s")
        if isinstance(data, dict) and one in data:
            data = dict(data)
            single = data.pop(one)
            data[cls.ITEMS] = [*data.get(cls.ITEMS, []), single]
        return data


class ConfirmMatch(_ReviewCommand):
    """Accept one or more proposed matches (one batch of events: all or none)."""

    ITEMS = "match_ids"
    match_ids: list[str] = Field(min_length=1)


class RejectMatch(_ReviewCommand):
    """Refuse one or more proposed matches; their records become open exceptions again."""

    ITEMS = "match_ids"
    match_ids: list[str] = Field(min_length=1)
    reason: Reason


class MatchManually(RunCommand):
    """Match open exception records by hand (one or more on each side). Amounts beyond the job's
    tolerance need ``accept_difference`` and a note."""

    source_ids: list[str] = Field(min_length=1)
    target_ids: list[str] = Field(min_length=1)
    note: str = Field(default="", max_length=500)
    accept_difference: bool = False


class DismissException(_ReviewCommand):
    """Close one or more exceptions without a match, with a reason (e.g. a known bank fee)."""

    ITEMS = "exception_ids"
    exception_ids: list[str] = Field(min_length=1)
    reason: Reason


C = TypeVar("C", bound=Command)


def build(kind: type[C], **fields: Any) -> C:
    """``kind(**fields)``, with a malformed field reported as a :class:`ValidationError` naming the
    field and what it must be (one line), not as a pydantic error listing."""
    try:
        return kind(**fields)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or kind.__name__
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "string_too_short":
            message = "must not be empty"
        raise FieldError(
            f"{field} {message}" if first["type"] == "string_too_short" else f"{field}: {message}",
            hint=f"give a valid {field}",
        ) from None
