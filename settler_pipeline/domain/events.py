"""The events of a reconciliation run, with their current schema versions.

Names and fields follow the original product where it had them (``ReconciliationStarted``,
``RecordMatched``, ``RecordUnmatched``, ``ReconciliationCompleted``, ``ReconciliationFailed``); the
original ``OrdersFetched`` / ``PaymentsFetched`` are ``SourceRecordsFetched`` / ``TargetRecordsFetched``
(a run reconciles any two systems, not only orders and payments). Every run event carries the run's
``attempt`` (1 for the first run, +1 per retry) so a read model can keep only the latest attempt.

Money fields are integer minor units; ``confidence`` is a score in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from settler_pipeline.domain.registry import EventRegistry, default_registry

AGGREGATE_TYPE: Final = "reconciliation"

RECONCILIATION_STARTED: Final = "ReconciliationStarted"
SOURCE_RECORDS_FETCHED: Final = "SourceRecordsFetched"
TARGET_RECORDS_FETCHED: Final = "TargetRecordsFetched"
RECORD_MATCHED: Final = "RecordMatched"
MATCH_PROPOSED: Final = "MatchProposed"
RECORD_UNMATCHED: Final = "RecordUnmatched"
DUPLICATE_DETECTED: Final = "DuplicateRecordDetected"
RECORD_QUARANTINED: Final = "RecordQuarantined"
RECONCILIATION_COMPLETED: Final = "ReconciliationCompleted"
RECONCILIATION_FAILED: Final = "ReconciliationFailed"
RECONCILIATION_CANCELLED: Final = "ReconciliationCancelled"
RECONCILIATION_RETRIED: Final = "ReconciliationRetried"
RECONCILIATION_SUPERSEDED: Final = "ReconciliationSuperseded"
RECONCILIATION_ABANDONED: Final = "ReconciliationAbandoned"
MATCH_CONFIRMED: Final = "MatchConfirmed"
MATCH_REJECTED: Final = "MatchRejected"
RECORDS_MANUALLY_MATCHED: Final = "RecordsManuallyMatched"
EXCEPTION_DISMISSED: Final = "ExceptionDismissed"

BULK_EVENT_TYPES: Final = (
    RECORD_MATCHED,
    MATCH_PROPOSED,
    RECORD_UNMATCHED,
    DUPLICATE_DETECTED,
    RECORD_QUARANTINED,
)
"""Events a run emits per record, in columnar batches; everything else is a single lifecycle event."""

REVIEW_EVENT_TYPES: Final = (MATCH_CONFIRMED, MATCH_REJECTED, RECORDS_MANUALLY_MATCHED, EXCEPTION_DISMISSED)

Side = Literal["source", "target"]


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DateRangeData(EventData):
    start: str
    end: str


class ReconciliationStarted(EventData):
    job_id: str
    source_adapter: str
    target_adapter: str
    date_range: DateRangeData
    initiated_by: str
    attempt: int = 1
    spec_fingerprint: str = ""
    spec: dict[str, Any] = Field(default_factory=dict)  # the job spec as run, for audit and retries
    spec_dir: str | None = None  # where the spec's relative paths resolved
    spec_path: str | None = None  # the file the spec was read from (a retry reads it again)
    # Runs of the same job, tenant and days this one replaces once it completes (a start with
    # `supersede`): they stay live until then, so a run that fails replaces nothing.
    supersedes: list[str] = Field(default_factory=list)


class RecordsFetched(EventData):
    """``SourceRecordsFetched`` / ``TargetRecordsFetched``."""

    attempt: int
    adapter: str
    count: int  # valid records read (inside the range and its settlement-lag margin)
    quarantined_count: int
    out_of_window_count: int
    total_rows: int  # = count + quarantined_count + out_of_window_count
    fetch_duration_ms: int


class RecordDetail(EventData):
    """A record as review shows it: what the run read (amounts in minor units)."""

    id: str
    occurred_at: str
    amount: int
    currency: str
    reference: str | None = None
    description: str | None = None


class RecordMatched(EventData):
    """Also the payload of ``MatchProposed`` (a match that needs a person's confirmation); a proposal
    also carries both sides' records, for review."""

    attempt: int
    match_id: str
    rule: str
    match_type: str
    source_ids: list[str]
    target_ids: list[str]
    amount: int  # source amount (sum), minor units
    target_amount: int
    amount_difference: int  # target - source
    currency: str
    confidence: float
    matched_fields: list[str]
    date_difference_days: int
    source_records: list[RecordDetail] | None = None
    target_records: list[RecordDetail] | None = None


class RecordUnmatched(EventData):
    attempt: int
    side: Side
    record_id: str
    line_number: int
    amount: int
    currency: str
    occurred_at: str
    reason: str
    candidate_ids: list[str] = Field(default_factory=list)
    reference: str | None = None  # the record's, for review (absent in older events)
    description: str | None = None
    # The candidate that came closest and why it was rejected (absent in events written before
    # they existed, and null when nothing was near).
    closest_id: str | None = None
    closest_amount: int | None = None
    closest_currency: str | None = None  # its own currency (another one when rejected currency_differs)
    closest_occurred_at: str | None = None
    closest_reference: str | None = None
    closest_rejection: str | None = None


class DuplicateRecordDetected(EventData):
    attempt: int
    side: Side
    record_id: str
    line_number: int
    first_line_number: int


class RecordQuarantined(EventData):
    attempt: int
    side: Side
    line_number: int
    reason: str
    raw: str


class Summary(EventData):
    total_source_records: int
    total_target_records: int
    matched_count: int  # matches (auto-confirmed)
    matched_source_records: int
    matched_target_records: int
    proposed_count: int
    unmatched_source_count: int
    unmatched_target_count: int
    duplicate_count: int
    quarantined_count: int
    errors_count: int
    duration_ms: int
    # see docs/read-models.md: matched source records / in-range source records; None for an empty run
    match_rate: float | None


class ReconciliationCompleted(EventData):
    attempt: int
    summary: Summary


class ErrorData(EventData):
    type: str
    message: str


class ReconciliationFailed(EventData):
    attempt: int
    error: ErrorData
    step: str
    retryable: bool


class ReconciliationCancelled(EventData):
    attempt: int
    reason: str
    cancelled_by: str


class ReconciliationAbandoned(EventData):
    """The process executing the attempt died (its lease expired) before the attempt finished."""

    attempt: int
    reason: str
    step: str  # the furthest step the log shows: "start", "match" or "record_results" (decide.reached_step)
    detected_by: str


class ReconciliationRetried(EventData):
    attempt: int  # the new attempt number
    retried_by: str
    # The job spec read again for this attempt (absent: the attempt runs the spec it had before).
    spec: dict[str, Any] | None = None
    spec_dir: str | None = None
    spec_path: str | None = None
    spec_fingerprint: str | None = None


class ReconciliationSuperseded(EventData):
    """A newer run of the same job, tenant and days replaced this one: its open items and matches no
    longer count (read models keep each job, tenant and day once)."""

    attempt: int  # the attempt that was superseded (the run's last)
    superseded_by: str  # the run that replaces it
    superseded_by_user: str
    reason: str


class MatchConfirmed(EventData):
    match_id: str
    confirmed_by: str


class MatchRejected(EventData):
    match_id: str
    reason: str
    rejected_by: str


class RecordsManuallyMatched(EventData):
    match_id: str
    source_ids: list[str]
    target_ids: list[str]
    note: str
    matched_by: str
    # What the records add up to (absent in older events): sums per side in minor units, the
    # difference target - source, and whether a difference beyond the job's tolerance was accepted.
    amount: int | None = None
    target_amount: int | None = None
    amount_difference: int | None = None
    currency: str | None = None
    difference_accepted: bool | None = None


class ExceptionDismissed(EventData):
    exception_id: str  # e.g. "unmatched:source:ch_123", "duplicate:target:42" (see exception_ids.py)
    reason: str
    dismissed_by: str


PAYLOADS: Final[dict[str, type[EventData]]] = {
    RECONCILIATION_STARTED: ReconciliationStarted,
    SOURCE_RECORDS_FETCHED: RecordsFetched,
    TARGET_RECORDS_FETCHED: RecordsFetched,
    RECORD_MATCHED: RecordMatched,
    MATCH_PROPOSED: RecordMatched,
    RECORD_UNMATCHED: RecordUnmatched,
    DUPLICATE_DETECTED: DuplicateRecordDetected,
    RECORD_QUARANTINED: RecordQuarantined,
    RECONCILIATION_COMPLETED: ReconciliationCompleted,
    RECONCILIATION_FAILED: ReconciliationFailed,
    RECONCILIATION_CANCELLED: ReconciliationCancelled,
    RECONCILIATION_RETRIED: ReconciliationRetried,
    RECONCILIATION_SUPERSEDED: ReconciliationSuperseded,
    RECONCILIATION_ABANDONED: ReconciliationAbandoned,
    MATCH_CONFIRMED: MatchConfirmed,
    MATCH_REJECTED: MatchRejected,
    RECORDS_MANUALLY_MATCHED: RecordsManuallyMatched,
    EXCEPTION_DISMISSED: ExceptionDismissed,
}


PAYLOAD_VERSIONS: Final[dict[str, int]] = dict.fromkeys(PAYLOADS, 1)
"""The current schema version of every event type: the version its payload model describes."""


@dataclass(frozen=True)
class NewEvent:
    """An event a decision emits, before it has an id, a position or metadata: its type name and its
    payload (an instance of that type's payload model, checked here)."""

    event_type: str
    payload: EventData
    omit_none: bool = False  # leave null optional fields out of the stored data (fields added later)

    def __post_init__(self) -> None:
        model = PAYLOADS.get(self.event_type)
        if model is not None and not isinstance(self.payload, model):
            raise TypeError(f"{self.event_type} takes a {model.__name__}, not {type(self.payload).__name__}")

    def data(self) -> dict[str, Any]:
        """The payload as stored (JSON-ready)."""
        return self.payload.model_dump(mode="json", exclude_none=self.omit_none)


def register_events(registry: EventRegistry = default_registry) -> None:
    """Declare every reconciliation event type at its current version (all are v1 today)."""
    for event_type, version in PAYLOAD_VERSIONS.items():
        registry.register(event_type, version)


register_events()
