"""The pure rule for items two runs share (domain/reconciliation/shared.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.domain import events as e
from settler_pipeline.domain.reconciliation import COMPLETED, ReconciliationState, shared_decisions

RECORDS = st.sampled_from(["a", "b", "c", "d"])
# a run proposes each record at most once (every record is matched at most once)
PROPOSALS = st.lists(
    st.tuples(st.uuids().map(str), RECORDS, RECORDS),
    max_size=4,
    unique_by=(lambda p: p[0], lambda p: p[1], lambda p: p[2]),
).map(lambda rows: {m: ((s,), (t,)) for m, s, t in rows})


def _run(
    run_id: str, proposals: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], **kw: object
) -> ReconciliationState:
    fields: dict[str, object] = {"tenant_id": "t", "job_id": "daily", "status": COMPLETED, **kw}
    return ReconciliationState(
        reconciliation_id=run_id,
        open_proposals=proposals,
        open_exceptions={f"proposed:{m}": "proposed" for m in proposals},
        **fields,  # type: ignore[arg-type]
    )


@given(mine=PROPOSALS, theirs=PROPOSALS, reject=st.booleans())
def test_a_decision_reaches_exactly_the_other_runs_proposals_of_the_same_records(
    mine: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
    theirs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
    reject: bool,
) -> None:
    state, other = _run("r1", mine), _run("r2", theirs)
    kind = e.MATCH_REJECTED if reject else e.MATCH_CONFIRMED
    drafts = [
        e.NewEvent(
            kind,
            e.MatchRejected(match_id=m, reason="x", rejected_by="u")
            if reject
            else e.MatchConfirmed(match_id=m, confirmed_by="u"),
        )
        for m in mine
    ]
    decided = shared_decisions(state, drafts, [state, other])
    twins = [d.payload.match_id for d in decided.get("r2", (other, []))[1]]  # type: ignore[attr-defined]
    as_sets = {m: (frozenset(s), frozenset(t)) for m, (s, t) in theirs.items()}
    wanted = [
        m for m, ids in as_sets.items() if ids in {(frozenset(s), frozenset(t)) for s, t in mine.values()}
    ]
    assert sorted(twins) == sorted(wanted)
    assert "r1" not in decided


def test_runs_of_another_tenant_or_job_or_not_completed_are_left_alone() -> None:
    ids = (("a",), ("b",))
    state = _run("r1", {"m1": ids})
    others = [
        _run("r2", {"m2": ids}, tenant_id="other"),
        _run("r3", {"m3": ids}, job_id="weekly"),
        _run("r4", {"m4": ids}, status="running"),
        _run("r5", {"m5": ids}),
    ]
    drafts = [e.NewEvent(e.MATCH_CONFIRMED, e.MatchConfirmed(match_id="m1", confirmed_by="u"))]
    assert sorted(shared_decisions(state, drafts, others)) == ["r5"]


def test_only_review_decisions_are_shared() -> None:
    ids = (("a",), ("b",))
    state = _run("r1", {"m1": ids})
    drafts = [
        e.NewEvent(
            e.RECONCILIATION_CANCELLED, e.ReconciliationCancelled(attempt=1, reason="x", cancelled_by="u")
        )
    ]
    assert shared_decisions(state, drafts, [_run("r2", {"m2": ids})]) == {}


def test_a_group_is_the_same_item_whatever_order_its_records_are_listed_in() -> None:
    state = _run("r1", {"m1": (("a", "b"), ("x",))})
    other = _run("r2", {"m2": (("b", "a"), ("x",))})
    drafts = [
        e.NewEvent(
            e.EXCEPTION_DISMISSED,
            e.ExceptionDismissed(exception_id="proposed:m1", reason="r", dismissed_by="u"),
        )
    ]
    (twin,) = shared_decisions(state, drafts, [other])["r2"][1]
    assert twin.payload == e.ExceptionDismissed(exception_id="proposed:m2", reason="r", dismissed_by="u")
