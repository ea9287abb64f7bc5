"""The Reconciliation aggregate: pure decide / evolve over a run's events.

Lifecycle: ``new → started → running → completed | failed | cancelled | abandoned``; a failed,
cancelled or abandoned run can be retried (a new attempt, back to ``started``); ``abandoned`` means the
process executing the attempt died before recording how it ended. A live run (started, running or
completed) is ``superseded`` when a newer run of the same job, tenant and days replaces it. Review
commands act on a completed run's open items.

The state is kept small on purpose: counts for the current attempt plus the *open* review items
(proposals and exceptions), never the list of matched records, so a million-match run folds into a
state the size of its exceptions. Three ways to build it, equal by construction and by property test:
``evolve`` (one event), ``fold`` (a sequence), ``fold_frame`` (a Polars frame of stored events, the bulk
path used for loading big runs and building snapshots).

Exception ids:
``unmatched:<side>:<record_id>`` (incl. ambiguous and rejected proposals), ``proposed:<match_id>``,
``duplicate:<side>:<line>``, ``quarantined:<side>:<line>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import polars as pl

from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.errors import NotFoundError, StateError, ValidationError

SNAPSHOT_SCHEMA_VERSION: Final = 1
"""Bump when the state's shape changes: snapshots of another version are ignored and rebuilt."""

NEW, STARTED, RUNNING, COMPLETED, FAILED, CANCELLED, SUPERSEDED, ABANDONED = (
    "new",
    "started",
    "running",
    "completed",
    "failed",
    "cancelled",
    "superseded",
    "abandoned",
)
FINISHED: Final = (COMPLETED, FAILED, CANCELLED, SUPERSEDED, ABANDONED)
RETRYABLE: Final = (FAILED, CANCELLED, ABANDONED)
LIVE: Final = (STARTED, RUNNING, COMPLETED)
"""Statuses of a run that counts for its job, tenant and days (a second one needs ``supersede``)."""


@dataclass(frozen=True)
class Counts:
    """What the current attempt found so far."""

    source_records: int = 0
    target_records: int = 0
    matched: int = 0
    proposed: int = 0
    unmatched_source: int = 0
    unmatched_target: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass(frozen=True)
class ReconciliationState:
    """A run's state after ``version`` events."""

    reconciliation_id: str | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None  # the run's correlation id (every event of the run carries it)
    job_id: str | None = None
    status: str = NEW
    attempt: int = 0
    version: int = 0
    date_range: tuple[str, str] | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)
    counts: Counts = Counts()
    open_proposals: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    open_exceptions: Mapping[str, str] = field(default_factory=dict)  # exception id -> reason
    last_error: Mapping[str, Any] | None = None
    resolved: int = 0  # review decisions taken

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the snapshot payload)."""
        return {
            "reconciliation_id": self.reconciliation_id,
            "tenant_id": self.tenant_id,
            "correlation_id": self.correlation_id,
            "job_id": self.job_id,
            "status": self.status,
            "attempt": self.attempt,
            "version": self.version,
            "date_range": list(self.date_range) if self.date_range else None,
            "spec": dict(self.spec),
            "counts": self.counts.__dict__,
            "open_proposals": {k: [list(s), list(t)] for k, (s, t) in sorted(self.open_proposals.items())},
            "open_exceptions": dict(sorted(self.open_exceptions.items())),
            "last_error": dict(self.last_error) if self.last_error else None,
            "resolved": self.resolved,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconciliationState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            reconciliation_id=data["reconciliation_id"],
            tenant_id=data["tenant_id"],
            correlation_id=data["correlation_id"],
            job_id=data["job_id"],
            status=data["status"],
            attempt=data["attempt"],
            version=data["version"],
            date_range=(data["date_range"][0], data["date_range"][1]) if data["date_range"] else None,
            spec=data["spec"],
            counts=Counts(**data["counts"]),
            open_proposals={k: (tuple(v[0]), tuple(v[1])) for k, v in data["open_proposals"].items()},
            open_exceptions=dict(data["open_exceptions"]),
            last_error=data["last_error"],
            resolved=data["resolved"],
        )


class _Builder:
    """Mutable working copy used inside evolve/fold (the public functions stay pure)."""

    def __init__(self, state: ReconciliationState) -> None:
        self.s = state
        self.counts = dict(state.counts.__dict__)
        self.proposals = dict(state.open_proposals)
        self.exceptions = dict(state.open_exceptions)

    def freeze(self) -> ReconciliationState:
        return replace(
            self.s,
            counts=Counts(**self.counts),
            open_proposals=self.proposals,
            open_exceptions=self.exceptions,
        )

    def lifecycle(
        self, event_type: str, data: Mapping[str, Any], aggregate_id: str, tenant_id: str, correlation_id: str
    ) -> None:
        s = self.s
        if event_type == e.RECONCILIATION_STARTED:
            self._reset()
            dr = data["date_range"]
            self.s = replace(
                s,
                reconciliation_id=aggregate_id,
                tenant_id=tenant_id,
                correlation_id=correlation_id,
                job_id=data["job_id"],
                status=STARTED,
                attempt=data.get("attempt", 1),
                date_range=(dr["start"], dr["end"]),
                spec={
                    "spec": data.get("spec", {}),
                    "spec_dir": data.get("spec_dir"),
                    "spec_path": data.get("spec_path"),
                },
                last_error=None,
            )
        elif event_type == e.RECONCILIATION_RETRIED:
            self._reset()
            spec = s.spec
            if data.get("spec") is not None:
                spec = {
                    "spec": data["spec"],
                    "spec_dir": data.get("spec_dir"),
                    "spec_path": data.get("spec_path"),
                }
            self.s = replace(s, status=STARTED, attempt=data["attempt"], last_error=None, spec=spec)
        elif event_type in (e.SOURCE_RECORDS_FETCHED, e.TARGET_RECORDS_FETCHED):
            key = "source_records" if event_type == e.SOURCE_RECORDS_FETCHED else "target_records"
            self.counts[key] = data["count"]
            self.s = replace(s, status=RUNNING)
        elif event_type == e.RECONCILIATION_COMPLETED:
            self.s = replace(s, status=COMPLETED)
        elif event_type == e.RECONCILIATION_FAILED:
            self.s = replace(s, status=FAILED, last_error={**data["error"], "step": data["step"]})
        elif event_type == e.RECONCILIATION_CANCELLED:
            self.s = replace(s, status=CANCELLED)
        elif event_type == e.RECONCILIATION_SUPERSEDED:
            # Nothing of a superseded run stays open for review: the run replacing it has its own items.
            self._reset()
            self.s = replace(s, status=SUPERSEDED)
        elif event_type == e.RECONCILIATION_ABANDONED:
            error = {"type": "RunAbandoned", "message": data["reason"], "step": data["step"]}
            self.s = replace(s, status=ABANDONED, last_error=error)
        elif event_type == e.MATCH_CONFIRMED:
            if self.proposals.pop(data["match_id"], None) is not None:
                self.exceptions.pop(f"proposed:{data['match_id']}", None)
                self.counts["proposed"] -= 1
                self.counts["matched"] += 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        elif event_type == e.MATCH_REJECTED:
            ids = self.proposals.pop(data["match_id"], None)
            if ids is not None:
                self.exceptions.pop(f"proposed:{data['match_id']}", None)
                self.counts["proposed"] -= 1
                for record_id in ids[0]:
                    self.exceptions[f"unmatched:source:{record_id}"] = "proposal_rejected"
                    self.counts["unmatched_source"] += 1
                for record_id in ids[1]:
                    self.exceptions[f"unmatched:target:{record_id}"] = "proposal_rejected"
                    self.counts["unmatched_target"] += 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        elif event_type == e.RECORDS_MANUALLY_MATCHED:
            for side, key in (("source", "source_ids"), ("target", "target_ids")):
                for record_id in data[key]:
                    if self.exceptions.pop(f"unmatched:{side}:{record_id}", None) is not None:
                        self.counts[f"unmatched_{side}"] -= 1
            self.counts["matched"] += 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        elif event_type == e.EXCEPTION_DISMISSED:
            exception_id = data["exception_id"]
            if self.exceptions.pop(exception_id, None) is not None:
                kind, _, rest = exception_id.partition(":")
                if kind == "unmatched":
                    self.counts[f"unmatched_{rest.partition(':')[0]}"] -= 1
                elif kind == "proposed":
                    self.proposals.pop(rest, None)
                    self.counts["proposed"] -= 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        # Unknown (future) event types leave the state unchanged: old code can read newer logs.

    def bulk(self, event_type: str, data: Mapping[str, Any]) -> None:
        if event_type == e.RECORD_MATCHED:
            self.counts["matched"] += 1
        elif event_type == e.MATCH_PROPOSED:
            self.counts["proposed"] += 1
            self.proposals[data["match_id"]] = (tuple(data["source_ids"]), tuple(data["target_ids"]))
            self.exceptions[f"proposed:{data['match_id']}"] = data["rule"]
        elif event_type == e.RECORD_UNMATCHED:
            if data["reason"] != "outside_range":
                self.counts[f"unmatched_{data['side']}"] += 1
                self.exceptions[f"unmatched:{data['side']}:{data['record_id']}"] = data["reason"]
        elif event_type == e.DUPLICATE_DETECTED:
            self.counts["duplicates"] += 1
            self.exceptions[f"duplicate:{data['side']}:{data['line_number']}"] = "duplicate"
        elif event_type == e.RECORD_QUARANTINED:
            self.counts["quarantined"] += 1
            self.exceptions[f"quarantined:{data['side']}:{data['line_number']}"] = data["reason"]

    def _reset(self) -> None:
        self.counts = dict(Counts().__dict__)
        self.proposals = {}
        self.exceptions = {}

    def apply(
        self, event_type: str, data: Mapping[str, Any], aggregate_id: str, tenant_id: str, correlation_id: str
    ) -> None:
        if event_type in e.BULK_EVENT_TYPES:
            self.bulk(event_type, data)
        else:
            self.lifecycle(event_type, data, aggregate_id, tenant_id, correlation_id)
        self.s = replace(self.s, version=self.s.version + 1)


def evolve(state: ReconciliationState, event: EventEnvelope) -> ReconciliationState:
    """The state after one more event."""
    return fold(state, [event])


def fold(state: ReconciliationState, events: Iterable[EventEnvelope]) -> ReconciliationState:
    """The state after ``events`` in order."""
    builder = _Builder(state)
    for event in events:
        meta = event.metadata
        builder.apply(event.event_type, event.data, event.aggregate_id, meta.tenant_id, meta.correlation_id)
    return builder.freeze()


_BULK_FIELDS = pl.Struct(
    {
        "side": pl.String,
        "record_id": pl.String,
        "reason": pl.String,
        "line_number": pl.Int64,
        "match_id": pl.String,
        "rule": pl.String,
        "source_ids": pl.List(pl.String),
        "target_ids": pl.List(pl.String),
    }
)


def fold_frame(state: ReconciliationState, frame: pl.DataFrame) -> ReconciliationState:
    """The state after the stored events in ``frame`` (columns ``aggregate_id, event_type, data,
    tenant_id, correlation_id``, in version order). Equal to :func:`fold` over the same events, but
    per-record events
    are applied in bulk: only exceptions and proposals are decoded, matches are just counted."""
    if frame.height == 0:
        return state
    builder = _Builder(state)
    is_bulk = pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES))
    chunks = frame.select("aggregate_id", "event_type", "data", "tenant_id", "correlation_id").with_columns(
        (~is_bulk).cum_sum().alias("_chunk"), is_bulk.alias("_bulk")
    )
    for (_, bulk), chunk in chunks.group_by("_chunk", "_bulk", maintain_order=True):
        if not bulk:
            for event_type, aggregate_id, data, tenant, correlation in chunk.select(
                "event_type", "aggregate_id", "data", "tenant_id", "correlation_id"
            ).iter_rows():
                builder.apply(event_type, json.loads(data), aggregate_id, tenant, correlation)
            continue
        counts = dict(chunk.group_by("event_type").len().iter_rows())
        builder.counts["matched"] += counts.get(e.RECORD_MATCHED, 0)
        detailed = chunk.filter(pl.col("event_type") != e.RECORD_MATCHED)
        if detailed.height:
            decoded = detailed.select(
                "event_type", pl.col("data").str.json_decode(_BULK_FIELDS).alias("d")
            ).unnest("d")
            for row in decoded.iter_rows(named=True):
                builder.bulk(row["event_type"], row)
        builder.s = replace(builder.s, version=builder.s.version + chunk.height)
    return builder.freeze()


# -- decisions ------------------------------------------------------------------------------------
# Each returns the (event_type, data) pairs to append; they raise StateError when the run's state
# forbids the command. They never touch storage.

Draft = tuple[str, dict[str, Any]]


def decide_start(state: ReconciliationState, cmd: c.StartReconciliation, *, fingerprint: str) -> list[Draft]:
    """Start a new run; refused if the run id is already in use."""
    if state.status != NEW:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} already exists (status {state.status})",
            hint="use a new run id, or `settler retry RUN_ID` for a failed or cancelled run",
        )
    data = e.ReconciliationStarted(
        job_id=cmd.job_id,
        source_adapter=cmd.source_adapter,
        target_adapter=cmd.target_adapter,
        date_range=e.DateRangeData(
            start=cmd.date_range.start.isoformat(), end=cmd.date_range.end.isoformat()
        ),
        initiated_by=cmd.user_id,
        attempt=1,
        spec_fingerprint=fingerprint,
        spec=cmd.spec,
        spec_dir=cmd.spec_dir,
        spec_path=cmd.spec_path,
    )
    return [(e.RECONCILIATION_STARTED, data.model_dump(mode="json"))]


def decide_retry(
    state: ReconciliationState, cmd: c.RetryReconciliation, *, fingerprint: str | None = None
) -> list[Draft]:
    """Retry only a failed, cancelled or abandoned run (with the spec read again, when the command has
    one)."""
    _require_exists(state, cmd)
    if state.status not in RETRYABLE:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is {state.status}; "
            "only a failed, cancelled or abandoned run can be retried"
        )
    data = e.ReconciliationRetried(attempt=state.attempt + 1, retried_by=cmd.user_id)
    if cmd.spec is not None:
        data = data.model_copy(
            update={
                "spec": cmd.spec,
                "spec_dir": cmd.spec_dir,
                "spec_path": cmd.spec_path,
                "spec_fingerprint": fingerprint,
            }
        )
    return [(e.RECONCILIATION_RETRIED, data.model_dump(mode="json", exclude_none=True))]


def decide_abandon(state: ReconciliationState, *, reason: str, detected_by: str) -> list[Draft]:
    """Record that the attempt's process died; only a run still started or running can be abandoned."""
    if state.status not in (STARTED, RUNNING):
        raise StateError(f"reconciliation {state.reconciliation_id} is {state.status}; it is not abandoned")
    data = e.ReconciliationAbandoned(
        attempt=state.attempt,
        reason=reason,
        step="start" if state.status == STARTED else "fetch",
        detected_by=detected_by,
    )
    return [(e.RECONCILIATION_ABANDONED, data.model_dump(mode="json"))]


def decide_cancel(state: ReconciliationState, cmd: c.CancelReconciliation) -> list[Draft]:
    """Cancel only a run that has not finished."""
    _require_exists(state, cmd)
    if state.status in FINISHED:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is already {state.status}; it cannot be cancelled"
        )
    data = e.ReconciliationCancelled(attempt=state.attempt, reason=cmd.reason, cancelled_by=cmd.user_id)
    return [(e.RECONCILIATION_CANCELLED, data.model_dump(mode="json"))]


def decide_supersede(state: ReconciliationState, cmd: c.SupersedeReconciliation) -> list[Draft]:
    """Supersede only a live run (started, running or completed), and never by itself."""
    _require_exists(state, cmd)
    if state.status not in LIVE:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is {state.status}; only a live run can be superseded"
        )
    if cmd.superseded_by == cmd.reconciliation_id:
        raise ValidationError("a run cannot supersede itself")
    data = e.ReconciliationSuperseded(
        attempt=state.attempt,
        superseded_by=cmd.superseded_by,
        superseded_by_user=cmd.user_id,
        reason=cmd.reason,
    )
    return [(e.RECONCILIATION_SUPERSEDED, data.model_dump(mode="json"))]


def _distinct(ids: list[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise ValidationError(f"a {what} is listed twice", hint="list each id once")


def decide_confirm(state: ReconciliationState, cmd: c.ConfirmMatch) -> list[Draft]:
    """Confirm open proposals of a completed run (every one must be open)."""
    _distinct(cmd.match_ids, "match id")
    for match_id in cmd.match_ids:
        _require_open_proposal(state, cmd, match_id)
    return [(e.MATCH_CONFIRMED, {"match_id": m, "confirmed_by": cmd.user_id}) for m in cmd.match_ids]


def decide_reject(state: ReconciliationState, cmd: c.RejectMatch) -> list[Draft]:
    """Reject open proposals; their records reopen as exceptions."""
    _distinct(cmd.match_ids, "match id")
    for match_id in cmd.match_ids:
        _require_open_proposal(state, cmd, match_id)
    return [
        (e.MATCH_REJECTED, {"match_id": m, "reason": cmd.reason, "rejected_by": cmd.user_id})
        for m in cmd.match_ids
    ]


def decide_manual_match(
    state: ReconciliationState,
    cmd: c.MatchManually,
    *,
    match_id: str,
    facts: Mapping[str, Any] | None = None,
) -> list[Draft]:
    """Match open unmatched records by hand; every record must be an open unmatched exception.
    ``facts`` are the checked amounts, currency and difference the event records (see
    :func:`settler_pipeline.application.review.manual_match_facts`)."""
    _require_reviewable(state, cmd)
    for side, ids in (("source", cmd.source_ids), ("target", cmd.target_ids)):
        if len(set(ids)) != len(ids):
            raise ValidationError(f"a {side} record id is listed twice")
        for record_id in ids:
            if f"unmatched:{side}:{record_id}" not in state.open_exceptions:
                raise StateError(
                    f"{side} record {record_id} is not an open unmatched exception of this run",
                    hint="only records left unmatched can be matched by hand (see `settler review list`)",
                )
    data = e.RecordsManuallyMatched(
        match_id=match_id,
        source_ids=list(cmd.source_ids),
        target_ids=list(cmd.target_ids),
        note=cmd.note,
        matched_by=cmd.user_id,
        **dict(facts or {}),
    )
    return [(e.RECORDS_MANUALLY_MATCHED, data.model_dump(mode="json", exclude_none=True))]


def decide_dismiss(state: ReconciliationState, cmd: c.DismissException) -> list[Draft]:
    """Close open exceptions without a match (every one must be open)."""
    _require_reviewable(state, cmd)
    _distinct(cmd.exception_ids, "exception id")
    for exception_id in cmd.exception_ids:
        if exception_id not in state.open_exceptions:
            raise NotFoundError(
                f"no open exception {exception_id!r} in reconciliation {cmd.reconciliation_id}",
                hint="list open items with `settler review list`",
            )
    return [
        (e.EXCEPTION_DISMISSED, {"exception_id": x, "reason": cmd.reason, "dismissed_by": cmd.user_id})
        for x in cmd.exception_ids
    ]


def _require_exists(state: ReconciliationState, cmd: c.RunCommand) -> None:
    if state.status == NEW:
        raise NotFoundError(
            f"reconciliation {cmd.reconciliation_id} does not exist",
            hint='list runs with `settler sql "SELECT * FROM reconciliation_summary"`',
        )


def _require_open_proposal(state: ReconciliationState, cmd: c.RunCommand, match_id: str) -> None:
    _require_reviewable(state, cmd)
    if match_id not in state.open_proposals:
        raise NotFoundError(
            f"no open proposed match {match_id} in reconciliation {cmd.reconciliation_id}",
            hint="list open items with `settler review list`",
        )


def _require_reviewable(state: ReconciliationState, cmd: c.RunCommand) -> None:
    _require_exists(state, cmd)
    if state.status != COMPLETED:
        raise StateError(
            f"reconciliation {cmd.reconciliation_id} is {state.status}; only a completed run is reviewed"
        )
