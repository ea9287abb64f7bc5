"""The Reconciliation aggregate: lifecycle decisions and the equivalence of its three folds."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.errors import NotFoundError, StateError
from settler_pipeline.ids import new_id
from tests.profiles import examples

RUN = new_id()
TENANT = new_id()
CORRELATION = new_id()


def envelope(event_type: str, data: dict[str, object]) -> EventEnvelope:
    return EventEnvelope(
        aggregate_id=RUN,
        aggregate_type=e.AGGREGATE_TYPE,
        event_type=event_type,
        data=data,
        metadata=EventMetadata(tenant_id=TENANT, correlation_id=CORRELATION, user_id="alice"),
    )


def start_command() -> c.StartReconciliation:
    return c.StartReconciliation(
        reconciliation_id=RUN,
        tenant_id=TENANT,
        user_id="alice",
        job_id="job",
        source_adapter="csv",
        target_adapter="csv",
        date_range=c.DateRange(start=date(2026, 11, 1), end=date(2026, 11, 2)),
    )


def as_envelope(new: agg.NewEvent) -> EventEnvelope:
    return envelope(new.event_type, new.data())


def started() -> EventEnvelope:
    (new,) = agg.decide_start(agg.ReconciliationState(), start_command(), fingerprint="f")
    return envelope(new.event_type, new.data())


def unmatched(side: str, record_id: str, reason: str = "missing_settlement") -> EventEnvelope:
    return envelope(
        e.RECORD_UNMATCHED,
        {
            "attempt": 1,
            "side": side,
            "record_id": record_id,
            "line_number": 1,
            "amount": 100,
            "currency": "EUR",
            "occurred_at": "2026-11-01T00:00:00Z",
            "reason": reason,
            "candidate_ids": [],
        },
    )


def proposed(match_id: str, sources: list[str], targets: list[str]) -> EventEnvelope:
    return envelope(
        e.MATCH_PROPOSED,
        {
            "attempt": 1,
            "match_id": match_id,
            "rule": "fuzzy_text",
            "match_type": "one_to_one",
            "source_ids": sources,
            "target_ids": targets,
            "amount": 100,
            "target_amount": 100,
            "amount_difference": 0,
            "currency": "EUR",
            "confidence": 0.9,
            "matched_fields": ["description"],
            "date_difference_days": 0,
        },
    )


def matched(match_id: str) -> EventEnvelope:
    event = proposed(match_id, ["s"], ["t"])
    return envelope(e.RECORD_MATCHED, event.data)


def completed() -> EventEnvelope:
    summary = {k: 0 for k in e.Summary.model_fields}
    summary["match_rate"] = 0.0
    return envelope(e.RECONCILIATION_COMPLETED, {"attempt": 1, "summary": summary})


def as_frame(events: list[EventEnvelope]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "aggregate_id": [ev.aggregate_id for ev in events],
            "event_type": [ev.event_type for ev in events],
            "data": [json.dumps(ev.data) for ev in events],
            "tenant_id": [ev.metadata.tenant_id for ev in events],
            "correlation_id": [ev.metadata.correlation_id for ev in events],
        }
    )


def test_a_started_run_can_not_be_started_again() -> None:
    state = agg.fold(agg.ReconciliationState(), [started()])
    assert state.status == agg.STARTED
    with pytest.raises(StateError, match="already exists"):
        agg.decide_start(state, start_command(), fingerprint="f")


def test_a_completed_run_can_not_be_cancelled_and_a_running_one_can() -> None:
    cancel = c.CancelReconciliation(reconciliation_id=RUN, tenant_id=TENANT, user_id="bob", reason="stop")
    running = agg.fold(agg.ReconciliationState(), [started()])
    assert agg.decide_cancel(running, cancel)[0].event_type == e.RECONCILIATION_CANCELLED
    done = agg.fold(running, [completed()])
    with pytest.raises(StateError, match="already completed"):
        agg.decide_cancel(done, cancel)


def test_an_abandoned_run_names_the_furthest_step_its_events_show() -> None:
    fetched = envelope(
        e.SOURCE_RECORDS_FETCHED,
        {"attempt": 1, "adapter": "csv", "count": 1, "quarantined_count": 0, "out_of_window_count": 0},
    )
    steps = []
    for events in ([started()], [started(), fetched], [started(), fetched, unmatched("source", "s1")]):
        (abandon,) = agg.decide_abandon(
            agg.fold(agg.ReconciliationState(), events), reason="x", detected_by="b"
        )
        steps.append(abandon.data()["step"])
    assert steps == ["start", "match", "record_results"]


def test_only_failed_or_cancelled_runs_are_retried_and_a_retry_resets_the_attempt() -> None:
    retry = c.RetryReconciliation(reconciliation_id=RUN, tenant_id=TENANT, user_id="bob")
    done = agg.fold(agg.ReconciliationState(), [started(), unmatched("source", "a"), completed()])
    with pytest.raises(StateError, match="only a failed, cancelled or abandoned"):
        agg.decide_retry(done, retry)
    cancelled = agg.fold(
        done, [envelope(e.RECONCILIATION_CANCELLED, {"attempt": 1, "reason": "x", "cancelled_by": "b"})]
    )
    (new,) = agg.decide_retry(cancelled, retry)
    again = agg.fold(cancelled, [envelope(new.event_type, new.data())])
    assert (again.status, again.attempt, again.open_exceptions) == (agg.STARTED, 2, {})


def test_commands_on_an_unknown_run_say_it_does_not_exist() -> None:
    cancel = c.CancelReconciliation(reconciliation_id=RUN, tenant_id=TENANT, user_id="bob", reason="stop")
    with pytest.raises(NotFoundError):
        agg.decide_cancel(agg.ReconciliationState(), cancel)


def test_review_closes_exceptions_and_a_rejected_proposal_reopens_its_records() -> None:
    state = agg.fold(
        agg.ReconciliationState(),
        [
            started(),
            unmatched("source", "a"),
            unmatched("target", "b"),
            proposed("m1", ["s1"], ["t1"]),
            completed(),
        ],
    )
    assert set(state.open_exceptions) == {"unmatched:source:a", "unmatched:target:b", "proposed:m1"}
    reject = c.RejectMatch(
        reconciliation_id=RUN, tenant_id=TENANT, user_id="bob", match_id="m1", reason="wrong"
    )
    state = agg.fold(state, [as_envelope(agg.decide_reject(state, reject)[0])])
    assert "unmatched:source:s1" in state.open_exceptions and "proposed:m1" not in state.open_exceptions
    manual = c.MatchManually(
        reconciliation_id=RUN, tenant_id=TENANT, user_id="bob", source_ids=["a"], target_ids=["b"]
    )
    state = agg.fold(state, [as_envelope(agg.decide_manual_match(state, manual, match_id="mm")[0])])
    assert "unmatched:source:a" not in state.open_exceptions
    with pytest.raises(StateError, match="not an open unmatched exception"):
        agg.decide_manual_match(state, manual, match_id="mm2")
    dismiss = c.DismissException(
        reconciliation_id=RUN,
        tenant_id=TENANT,
        user_id="bob",
        exception_id="unmatched:target:t1",
        reason="bank fee",
    )
    state = agg.fold(state, [as_envelope(agg.decide_dismiss(state, dismiss)[0])])
    assert set(state.open_exceptions) == {"unmatched:source:s1"}
    assert state.counts.unmatched_source == 1 and state.counts.unmatched_target == 0


def test_a_run_that_is_not_completed_can_not_be_reviewed() -> None:
    state = agg.fold(agg.ReconciliationState(), [started(), proposed("m1", ["s1"], ["t1"])])
    confirm = c.ConfirmMatch(reconciliation_id=RUN, tenant_id=TENANT, user_id="bob", match_id="m1")
    with pytest.raises(StateError, match="only a completed run"):
        agg.decide_confirm(state, confirm)


def test_state_survives_a_snapshot_round_trip() -> None:
    state = agg.fold(
        agg.ReconciliationState(), [started(), unmatched("source", "a"), proposed("m", ["x"], ["y"])]
    )
    assert agg.ReconciliationState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


_event_strategy = st.one_of(
    st.builds(lambda i: matched(f"m{i}"), st.integers(0, 50)),
    st.builds(lambda s, i: unmatched(s, f"r{i}"), st.sampled_from(["source", "target"]), st.integers(0, 20)),
    st.builds(lambda i: unmatched("source", f"o{i}", "outside_range"), st.integers(0, 5)),
    st.builds(lambda i: proposed(f"p{i}", [f"ps{i}"], [f"pt{i}"]), st.integers(0, 10)),
    st.builds(
        lambda s, i: envelope(
            e.DUPLICATE_DETECTED,
            {"attempt": 1, "side": s, "record_id": "d", "line_number": i, "first_line_number": 0},
        ),
        st.sampled_from(["source", "target"]),
        st.integers(1, 9),
    ),
    st.builds(
        lambda i: envelope(
            e.EXCEPTION_DISMISSED,
            {"exception_id": f"unmatched:source:r{i}", "reason": "x", "dismissed_by": "b"},
        ),
        st.integers(0, 20),
    ),
    st.builds(
        lambda i: envelope(e.MATCH_CONFIRMED, {"match_id": f"p{i}", "confirmed_by": "b"}), st.integers(0, 10)
    ),
    st.builds(
        lambda i: envelope(e.MATCH_REJECTED, {"match_id": f"p{i}", "reason": "x", "rejected_by": "b"}),
        st.integers(0, 10),
    ),
    st.just(completed()),
)


@settings(max_examples=examples(150), deadline=None)
@given(events=st.lists(_event_strategy, max_size=40), split=st.integers(0, 40))
def test_bulk_fold_equals_event_by_event_fold_and_snapshot_plus_tail_equals_full_replay(
    events: list[EventEnvelope], split: int
) -> None:
    history = [started(), *events]
    full = agg.fold(agg.ReconciliationState(), history)
    assert agg.fold_frame(agg.ReconciliationState(), as_frame(history)) == full
    cut = min(split, len(history))
    snapshot = agg.ReconciliationState.from_dict(
        json.loads(json.dumps(agg.fold(agg.ReconciliationState(), history[:cut]).to_dict()))
    )
    assert agg.fold_frame(snapshot, as_frame(history[cut:])) == full
