"""Review items shared by runs: one decision for an item that shows in two runs.

A run reads each side ``date_window_days`` beyond its range, so an item whose records fall in two
runs' ranges (a charge on the last day of one daily run, its payout on the first day of the next)
belongs to both runs and is open in both. Deciding it in one run and leaving it open in the other
would let the two runs disagree (confirmed in one, rejected in the other) and would ask people to
decide the same thing twice. So a review decision is also recorded, in the same atomic append, in
every other completed run of the job that holds the same item open:

* a proposal is the same item when it pairs the same records (its match id differs: match ids name
  their run);
* an unmatched record is the same item when it has the same exception id (side and record id);
* a match made by hand is made in another run too when every one of its records is open unmatched
  there (under an id of that run's own).

A run that completes after such a decision (a new run of the next day, a retry, a run superseding
another) takes the decisions already made on its shared items over from the other runs, in their
order (:func:`inherited_decisions`), so it does not show a decided item as open.

A record left unmatched in one run may be matched in another run of the job that read more of its
days (a payout on the fourth day covering charges of three earlier days, a bank line that arrived
after the first run): it is accounted for there, so the completion of either run closes the other's
exception (:func:`closed_by_matches`). Such a closure is a fact about the matching run, not a
person's decision: a run completing later never takes it over (it finds its own closures among the
runs that count then), and when the matching run is superseded, the superseding run's completion
opens the exception again (the record's ``RecordUnmatched`` event, appended once more) unless a run
that counts still matches the record (:func:`closure_run` tells such closures apart).

Duplicate and quarantined rows are named by their input line, which depends on the file a run read,
so they are decided run by run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from settler_pipeline.domain import events as e
from settler_pipeline.domain import exception_ids as xid
from settler_pipeline.domain.reconciliation.builder import StateBuilder
from settler_pipeline.domain.reconciliation.state import ReconciliationState
from settler_pipeline.domain.reconciliation.status import COMPLETED

DECISIONS = frozenset(
    {e.MATCH_CONFIRMED, e.MATCH_REJECTED, e.EXCEPTION_DISMISSED, e.RECORDS_MANUALLY_MATCHED}
)
"""The event types of review decisions (the only events that can concern a shared item)."""

RecordSet = tuple[frozenset[str], frozenset[str]]


def _records(ids: tuple[tuple[str, ...], tuple[str, ...]]) -> RecordSet:
    # compared as sets: two runs may list a group's records in another order (their input lines)
    return frozenset(ids[0]), frozenset(ids[1])


def shared_decisions(
    state: ReconciliationState, drafts: Sequence[e.NewEvent], others: Sequence[ReconciliationState]
) -> dict[str, tuple[ReconciliationState, list[e.NewEvent]]]:
    """For each run of ``others`` (completed, same tenant and job, not ``state``'s run) holding open an
    item that ``drafts`` (decisions made on ``state``, taken before they apply) decide: that run and
    the same decisions on its own copies of the items, by run id. Runs holding none are left out."""
    if not any(draft.event_type in DECISIONS for draft in drafts):
        return {}
    decided: dict[str, tuple[ReconciliationState, list[e.NewEvent]]] = {}
    for other in others:
        if (
            other.reconciliation_id in (None, state.reconciliation_id)
            or other.status != COMPLETED
            or (other.tenant_id, other.job_id) != (state.tenant_id, state.job_id)
        ):
            continue
        twins = [twin for draft in drafts if (twin := _twin(state, draft, other)) is not None]
        if twins:
            assert other.reconciliation_id is not None
            decided[other.reconciliation_id] = (other, twins)
    return decided


def _twin(state: ReconciliationState, draft: e.NewEvent, other: ReconciliationState) -> e.NewEvent | None:
    """``draft``'s decision on ``other``'s copy of the item, or ``None`` if ``other`` has it not open."""
    payload = draft.payload
    if isinstance(payload, e.MatchConfirmed | e.MatchRejected):
        twin = _proposal_twin(state, payload.match_id, other)
        return None if twin is None else _copy(draft, match_id=twin)
    if isinstance(payload, e.ExceptionDismissed):
        parsed = xid.parse(payload.exception_id)
        if parsed.kind == xid.PROPOSED:
            twin = _proposal_twin(state, parsed.key, other)
            return None if twin is None else _copy(draft, exception_id=xid.proposed(twin))
        if parsed.kind == xid.UNMATCHED and payload.exception_id in other.open_exceptions:
            return draft
        return None
    if isinstance(payload, e.RecordsManuallyMatched):
        held = [xid.unmatched("source", r) for r in payload.source_ids]
        held += [xid.unmatched("target", r) for r in payload.target_ids]
        # Only where every record is open unmatched, as a manual match requires (decide_manual_match):
        # a record the other run has matched or proposed elsewhere must not end in a second match.
        if not all(x in other.open_exceptions for x in held):
            return None
        return _copy(draft, match_id=manual_match_id(payload.match_id, other.reconciliation_id or ""))
    return None


def manual_match_id(match_id: str, run_id: str) -> str:
    """The id of a manual match's copy in run ``run_id``: named by the run, like every match id."""
    return str(uuid.uuid5(uuid.UUID(match_id), run_id))


def _proposal_twin(state: ReconciliationState, match_id: str, other: ReconciliationState) -> str | None:
    ids = state.open_proposals.get(match_id)
    if ids is None:
        return None
    wanted = _records(ids)
    return next((mid for mid, theirs in other.open_proposals.items() if _records(theirs) == wanted), None)


def _copy(draft: e.NewEvent, **update: str) -> e.NewEvent:
    return e.NewEvent(draft.event_type, draft.payload.model_copy(update=update), omit_none=draft.omit_none)


@dataclass(frozen=True)
class Decision:
    """A review decision another run recorded, as a run completing later takes it over: its event
    and, for a decision on a proposal, the records the proposal paired."""

    event: e.NewEvent
    records: tuple[tuple[str, ...], tuple[str, ...]] | None = None


def inherited_decisions(state: ReconciliationState, decisions: Sequence[Decision]) -> list[e.NewEvent]:
    """The decisions of other runs (in the order they were made) that decide items ``state``'s run,
    just completed, holds open, rewritten to its own copies. Each applies to the state the earlier
    ones leave (a rejection reopens records a later manual match may take). Closures because a run
    matched the record (:func:`closure_run`) are no decisions and are left out."""
    assert state.reconciliation_id is not None and state.tenant_id is not None
    taken: list[e.NewEvent] = []
    for decision in decisions:
        if closure_run(decision.event.payload) is not None:
            continue
        twin = _twin(_deciding(decision), decision.event, state)
        if twin is None:
            continue
        taken.append(twin)
        builder = StateBuilder(state)
        builder.apply(
            twin.event_type, twin.data(), state.reconciliation_id, state.tenant_id, state.correlation_id or ""
        )
        state = builder.freeze()
    return taken


def _deciding(decision: Decision) -> ReconciliationState:
    """A stand-in for the deciding run's state before its decision: all :func:`_twin` reads of it is the
    records of the proposal decided."""
    payload = decision.event.payload
    if decision.records is None:
        return ReconciliationState()
    if isinstance(payload, e.ExceptionDismissed):
        match_id = xid.parse(payload.exception_id).key
    elif isinstance(payload, e.MatchConfirmed | e.MatchRejected):
        match_id = payload.match_id
    else:
        return ReconciliationState()
    return ReconciliationState(open_proposals={match_id: decision.records})


def closed_by_matches(
    state: ReconciliationState, matches: Sequence[tuple[str, Sequence[str], Sequence[str]]], by: str
) -> list[e.NewEvent]:
    """The dismissals, by ``by``, of ``state``'s open unmatched records that one of ``matches`` (another
    run's id, its source ids and target ids) holds: the record is accounted for in that run, so it is
    no exception here. Each exception is closed once, naming the first run that matched it."""
    closed: list[e.NewEvent] = []
    seen: set[str] = set()
    for run, sources, targets in matches:
        for side, ids in (("source", sources), ("target", targets)):
            for record in ids:
                key = xid.unmatched(side, record)
                if key in state.open_exceptions and key not in seen:
                    seen.add(key)
                    reason = _CLOSED_BY_MATCH.format(run=run)
                    payload = e.ExceptionDismissed(exception_id=key, reason=reason, dismissed_by=by)
                    closed.append(e.NewEvent(e.EXCEPTION_DISMISSED, payload))
    return closed


_CLOSED_BY_MATCH = "matched in run {run} of the same job"
_CLOSURE = re.compile(r"matched in run (\S+) of the same job")


def closure_run(payload: e.EventData) -> str | None:
    """The run whose match closed an exception, for a dismissal :func:`closed_by_matches` made; None
    for anything else (a person's dismissal has a reason of their own)."""
    if not isinstance(payload, e.ExceptionDismissed):
        return None
    found = _CLOSURE.fullmatch(payload.reason)
    return found.group(1) if found else None
