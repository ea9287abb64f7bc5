"""Evolve: how each event changes a run's state, written once (:class:`StateBuilder`).

Unknown (future) event types leave the state unchanged, so old code can read newer logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.domain.reconciliation.state import Counts, ReconciliationState
from settler_pipeline.domain.reconciliation.status import (
    ABANDONED,
    CANCELLED,
    COMPLETED,
    FAILED,
    RUNNING,
    STARTED,
    SUPERSEDED,
)


class StateBuilder:
    """A mutable working copy of a run's state that events are applied to, one by one or in bulk.

    The one implementation of the aggregate's evolve: :func:`evolve`, :func:`fold`, the bulk folds
    (:mod:`.bulk`) and the snapshot builder all apply events through it. The public functions stay
    pure; only a builder made for the purpose is mutated."""

    def __init__(self, state: ReconciliationState) -> None:
        self.s = state
        self.counts = dict(state.counts.__dict__)
        self.proposals = dict(state.open_proposals)
        self.exceptions = dict(state.open_exceptions)

    def freeze(self) -> ReconciliationState:
        """The state so far, as an immutable value."""
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
                supersedes=tuple(data.get("supersedes") or ()),
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
            self._unfinished()
            self.s = replace(s, status=FAILED, last_error={**data["error"], "step": data["step"]})
        elif event_type == e.RECONCILIATION_CANCELLED:
            self._unfinished()
            self.s = replace(s, status=CANCELLED)
        elif event_type == e.RECONCILIATION_SUPERSEDED:
            # Nothing of a superseded run stays open for review: the run replacing it has its own items.
            self._reset()
            self.s = replace(s, status=SUPERSEDED)
        elif event_type == e.RECONCILIATION_ABANDONED:
            self._unfinished()
            error = {"type": "RunAbandoned", "message": data["reason"], "step": data["step"]}
            self.s = replace(s, status=ABANDONED, last_error=error)
        elif event_type == e.MATCH_CONFIRMED:
            if self.proposals.pop(data["match_id"], None) is not None:
                self.exceptions.pop(xid.proposed(data["match_id"]), None)
                self.counts["proposed"] -= 1
                self.counts["matched"] += 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        elif event_type == e.MATCH_REJECTED:
            ids = self.proposals.pop(data["match_id"], None)
            if ids is not None:
                self.exceptions.pop(xid.proposed(data["match_id"]), None)
                self.counts["proposed"] -= 1
                for record_id in ids[0]:
                    self.exceptions[xid.unmatched("source", record_id)] = "proposal_rejected"
                    self.counts["unmatched_source"] += 1
                for record_id in ids[1]:
                    self.exceptions[xid.unmatched("target", record_id)] = "proposal_rejected"
                    self.counts["unmatched_target"] += 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        elif event_type == e.RECORDS_MANUALLY_MATCHED:
            for side, key in (("source", "source_ids"), ("target", "target_ids")):
                for record_id in data[key]:
                    if self.exceptions.pop(xid.unmatched(side, record_id), None) is not None:
                        self.counts[f"unmatched_{side}"] -= 1
            self.counts["matched"] += 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        elif event_type == e.EXCEPTION_DISMISSED:
            exception_id = data["exception_id"]
            if self.exceptions.pop(exception_id, None) is not None:
                parsed = xid.parse(exception_id)
                if parsed.kind == xid.UNMATCHED:
                    self.counts[f"unmatched_{parsed.side}"] -= 1
                elif parsed.kind == xid.PROPOSED:
                    self.proposals.pop(parsed.key, None)
                    self.counts["proposed"] -= 1
            self.s = replace(self.s, resolved=s.resolved + 1)
        # Unknown (future) event types leave the state unchanged: old code can read newer logs.

    def bulk(self, event_type: str, data: Mapping[str, Any]) -> None:
        if event_type == e.RECORD_MATCHED:
            self.counts["matched"] += 1
        elif event_type == e.MATCH_PROPOSED:
            self.counts["proposed"] += 1
            self.proposals[data["match_id"]] = (tuple(data["source_ids"]), tuple(data["target_ids"]))
            self.exceptions[xid.proposed(data["match_id"])] = data["rule"]
        elif event_type == e.RECORD_UNMATCHED:
            if data["reason"] != "outside_range":
                self.counts[f"unmatched_{data['side']}"] += 1
                self.exceptions[xid.unmatched(data["side"], data["record_id"])] = data["reason"]
        elif event_type == e.DUPLICATE_DETECTED:
            self.counts["duplicates"] += 1
            self.exceptions[xid.duplicate(data["side"], data["line_number"])] = "duplicate"
        elif event_type == e.RECORD_QUARANTINED:
            self.counts["quarantined"] += 1
            self.exceptions[xid.quarantined(data["side"], data["line_number"])] = data["reason"]

    def add_bulk(
        self,
        counts: Mapping[str, int],
        proposals: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]],
        exceptions: Mapping[str, str],
        events: int,
    ) -> None:
        """Apply ``events`` consecutive per-record events at once, given what they add up to: the
        counts they raise, the proposals and exceptions they open (the bulk path; equal to applying
        them one by one with :meth:`apply`)."""
        for name, value in counts.items():
            self.counts[name] += value
        self.proposals.update(proposals)
        self.exceptions.update(exceptions)
        self.s = replace(self.s, version=self.s.version + events)

    def _reset(self) -> None:
        self.counts = dict(Counts().__dict__)
        self.proposals = {}
        self.exceptions = {}

    def _unfinished(self) -> None:
        """An attempt that ends without completing leaves nothing open for review: the results of
        the blocks it appended before failing are not the run's (the counts keep what it found)."""
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
    builder = StateBuilder(state)
    for event in events:
        meta = event.metadata
        builder.apply(event.event_type, event.data, event.aggregate_id, meta.tenant_id, meta.correlation_id)
    return builder.freeze()
