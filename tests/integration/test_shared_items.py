"""An item two daily runs share (a charge on one day, its payout on the next) is decided once: the
decision is recorded in both runs, in one atomic batch, and the read models of both agree (real CSV
files, real runs, the Python API)."""

from __future__ import annotations

import errno
import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from settler_pipeline import projections
from settler_pipeline.domain import events as e
from settler_pipeline.errors import NotFoundError, StateError
from settler_pipeline.session import Settler

DAY1, DAY2 = date(2026, 11, 26), date(2026, 11, 27)
HEADER = "id,amount,currency,date\n"
SPEC = """name: daily
source:
  adapter: csv
  path: source.csv
  columns: {record_id: id, amount: amount, currency: currency, occurred_at: date}
target:
  adapter: csv
  path: target.csv
  columns: {record_id: id, amount: amount, currency: currency, occurred_at: date}
matching: {passes: [{kind: amount_date, auto_confirm: false}]}
"""
SOURCE = ["s1,10.00,EUR,2026-11-26", "s2,20.00,EUR,2026-11-27", "s3,30.00,EUR,2026-11-26"]
# t1 pays s1 a day later: the proposal (s1, t1) belongs to both daily runs
TARGET = ["t1,10.00,EUR,2026-11-27", "t2,20.00,EUR,2026-11-27", "t3,30.00,EUR,2026-11-26"]


def _job(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "source.csv").write_text(HEADER + "".join(f"{row}\n" for row in SOURCE))
    (folder / "target.csv").write_text(HEADER + "".join(f"{row}\n" for row in TARGET))
    spec = folder / "daily.yaml"
    spec.write_text(SPEC)
    return spec


@pytest.fixture
def first_day(tmp_path: Path) -> tuple[Path, Path, str]:
    data = tmp_path / "data"
    spec = _job(tmp_path / "inputs")
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
    return data, spec, first


@pytest.fixture
def runs(first_day: tuple[Path, Path, str]) -> tuple[Path, str, str]:
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        second = app.reconcile(spec, start=DAY2, end=DAY2).reconciliation_id
    return data, first, second


def _completions_fail(app: Settler, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """Make every batch holding a completion fail as a full disk would; returns the store's type and
    its own ``append_frame`` (to put back)."""
    store_type = type(app.store)
    append = store_type.append_frame

    def full_disk(self: Any, frame: pl.DataFrame, **kwargs: Any) -> Any:
        if e.RECONCILIATION_COMPLETED in frame["event_type"].to_list():
            raise OSError(errno.ENOSPC, "No space left on device")
        return append(self, frame, **kwargs)

    monkeypatch.setattr(store_type, "append_frame", full_disk)
    return store_type, append


def _proposal(app: Settler, run_id: str, source_id: str) -> str:
    state = app.state(run_id)
    found = [m for m, (s, _) in state.open_proposals.items() if s == (source_id,)]
    assert len(found) == 1, state.open_proposals
    return found[0]


def _open(app: Settler, run_id: str) -> set[tuple[str, ...]]:
    """The run's open items by their records (proposals) or exception id (the rest)."""
    state = app.state(run_id)
    items = {("proposed", *s, *t) for s, t in state.open_proposals.values()}
    return items | {(x,) for x in state.open_exceptions if not x.startswith("proposed:")}


def test_both_runs_hold_the_shared_proposal_under_their_own_match_ids(runs: tuple[Path, str, str]) -> None:
    data, first, second = runs
    with Settler(data, user="olivia") as app:
        assert _open(app, first) == {("proposed", "s1", "t1"), ("proposed", "s3", "t3")}
        assert _open(app, second) == {("proposed", "s1", "t1"), ("proposed", "s2", "t2")}
        assert _proposal(app, first, "s1") != _proposal(app, second, "s1")


def test_confirming_a_shared_proposal_confirms_it_in_the_other_run(runs: tuple[Path, str, str]) -> None:
    data, first, second = runs
    with Settler(data, user="olivia") as app:
        before = app.state(second)
        head = app.store.head_position
        outcome = app.review("confirm", first, match_ids=[_proposal(app, first, "s1")])
        assert outcome.events_appended == 2
        assert outcome.details == {"also_decided_in": second}
        assert app.store.head_position == head + 2
        assert _open(app, first) == {("proposed", "s3", "t3")}
        assert _open(app, second) == {("proposed", "s2", "t2")}
        after = app.state(second)
        assert (after.counts.matched, after.counts.proposed) == (before.counts.matched + 1, 1)
        twin = app.stream(second).filter(pl.col("event_type") == "MatchConfirmed")
        assert twin.height == 1
        assert twin["correlation_id"][0] == before.correlation_id  # the other run's own correlation id
        projections.update(app.store, data)
        still = {f"proposed:{m}" for run in (first, second) for m in app.state(run).open_proposals}
    exceptions = projections.read_model(data, "reconciliation_exceptions")  # open items only
    shown = set(exceptions.filter(pl.col("kind") == "proposed")["exception_id"].to_list())
    assert shown == still
    assert len(still) == 2


def test_an_item_only_one_run_holds_is_decided_there_only(runs: tuple[Path, str, str]) -> None:
    data, first, second = runs
    with Settler(data, user="olivia") as app:
        outcome = app.review("confirm", first, match_ids=[_proposal(app, first, "s3")])
        assert (outcome.events_appended, outcome.details) == (1, {})
        assert _open(app, second) == {("proposed", "s1", "t1"), ("proposed", "s2", "t2")}


def test_rejecting_then_matching_by_hand_keeps_both_runs_in_step(runs: tuple[Path, str, str]) -> None:
    data, first, second = runs
    with Settler(data, user="olivia") as app:
        app.review("reject", second, match_ids=[_proposal(app, second, "s1")], reason="wrong payout")
        reopened = {("unmatched:source:s1",), ("unmatched:target:t1",)}
        assert _open(app, first) == reopened | {("proposed", "s3", "t3")}
        assert _open(app, second) == reopened | {("proposed", "s2", "t2")}
        outcome = app.review("match", first, source_ids=["s1"], target_ids=["t1"], note="found by hand")
        assert outcome.details == {"also_decided_in": second}
        assert _open(app, first) == {("proposed", "s3", "t3")}
        assert _open(app, second) == {("proposed", "s2", "t2")}


def test_dismissing_a_shared_record_dismisses_it_in_the_other_run(runs: tuple[Path, str, str]) -> None:
    data, first, second = runs
    with Settler(data, user="olivia") as app:
        app.review("reject", first, match_ids=[_proposal(app, first, "s1")], reason="no")
        app.review("dismiss", second, exception_ids=["unmatched:target:t1"], reason="bank fee reversal")
        assert ("unmatched:target:t1",) not in _open(app, first)
        assert ("unmatched:source:s1",) in _open(app, first)
        dismissed = app.stream(first).filter(pl.col("event_type") == "ExceptionDismissed")
        assert dismissed.height == 1


def test_a_repeated_decision_appends_nothing_in_either_run(runs: tuple[Path, str, str]) -> None:
    data, first, _ = runs
    with Settler(data, user="olivia") as app:
        match_id = _proposal(app, first, "s1")
        app.review("confirm", first, match_ids=[match_id], idempotency_key="confirm-s1")
        head = app.store.head_position
        again = app.review("confirm", first, match_ids=[match_id], idempotency_key="confirm-s1")
        assert again.repeated_command
        assert app.store.head_position == head


def test_another_tenants_run_of_the_same_job_is_never_touched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = _job(tmp_path / "inputs")
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        app.access.create_tenant("globex", admin="olivia")
        mine = app.reconcile(spec, start=DAY1, end=DAY1, tenant="acme").reconciliation_id
        theirs = app.reconcile(spec, start=DAY2, end=DAY2, tenant="globex").reconciliation_id
        outcome = app.review("confirm", mine, match_ids=[_proposal(app, mine, "s1")])
        assert (outcome.events_appended, outcome.details) == (1, {})
        assert ("proposed", "s1", "t1") in _open(app, theirs)


def test_a_manual_match_is_copied_only_where_every_record_is_open_unmatched(tmp_path: Path) -> None:
    """Run A proposes (s1, t1); run B pairs t1 with s9 by reference and leaves s1 open. Matching s1 and
    t1 by hand in A must not put t1 into a second match in B."""
    data, folder = tmp_path / "data", tmp_path / "inputs"
    folder.mkdir()
    header = "id,amount,currency,date,reference\n"
    (folder / "source.csv").write_text(header + "s1,10.00,EUR,2026-11-21,R1\ns9,77.00,EUR,2026-11-21,R9\n")
    (folder / "target.csv").write_text(header + "t1,10.00,EUR,2026-11-20,R9\n")
    columns = "{record_id: id, amount: amount, currency: currency, occurred_at: date, reference: reference}"
    base = (
        f"name: daily\ndate_window_days: 1\nsource: {{adapter: csv, path: source.csv, columns: {columns}}}\n"
    )
    base += f"target: {{adapter: csv, path: target.csv, columns: {columns}}}\n"
    (folder / "a.yaml").write_text(
        base.replace(", reference: reference}", "}")
        + "matching: {passes: [{kind: amount_date, auto_confirm: false, date_window: {days_before: 1}}]}\n"
    )
    (folder / "b.yaml").write_text(
        base + "matching: {passes: [{kind: reference, auto_confirm: false, search_in_description: false, "
        "tolerance: {absolute_minor: 10000}}]}\n"
    )
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        a = app.reconcile(
            folder / "a.yaml", start=date(2026, 11, 20), end=date(2026, 11, 20)
        ).reconciliation_id
        b = app.reconcile(
            folder / "b.yaml", start=date(2026, 11, 21), end=date(2026, 11, 21)
        ).reconciliation_id
        assert [ids for ids in app.state(b).open_proposals.values()] == [(("s9",), ("t1",))]
        app.review("reject", a, match_ids=[_proposal(app, a, "s1")], reason="not this one")
        by_hand = app.review("match", a, source_ids=["s1"], target_ids=["t1"], note="by hand")
        assert (by_hand.events_appended, by_hand.details) == (1, {})  # t1 is not open unmatched in B
        with pytest.raises(StateError, match=f"target record t1 is already matched in run {a} \\(by hand\\)"):
            app.review("confirm", b, match_ids=[_proposal(app, b, "s9")])  # t1 is A's now
        projections.update(app.store, data)
    matches = projections.read_model(data, "reconciliation_matches").filter(
        (pl.col("reconciliation_id") == b) & (pl.col("status") != "rejected")
    )
    assert matches["target_ids"].to_list() == [["t1"]]  # t1 in one match of B, still only proposed
    assert matches["status"].to_list() == ["proposed"]


def test_a_record_two_runs_propose_with_different_partners_is_matched_in_one_only(tmp_path: Path) -> None:
    """Day 1's run pairs t1 with s1; a charge s4 of day 2 arrives later, and day 2's run pairs t1 with
    it. Confirming both would match the one bank line twice: the second is refused, the first stays."""
    data, folder = tmp_path / "data", tmp_path / "inputs"
    spec = _job(folder)
    (folder / "source.csv").write_text(HEADER + "s1,10.00,EUR,2026-11-26\n")
    (folder / "target.csv").write_text(HEADER + "t1,10.00,EUR,2026-11-27\n")
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
        (folder / "source.csv").write_text(HEADER + "s1,10.00,EUR,2026-11-26\ns4,10.00,EUR,2026-11-27\n")
        second = app.reconcile(spec, start=DAY2, end=DAY2).reconciliation_id
        app.review("confirm", first, match_ids=[_proposal(app, first, "s1")])
        with pytest.raises(
            StateError, match=f"target record t1 is already matched in run {first}"
        ) as refused:
            app.review("confirm", second, match_ids=[_proposal(app, second, "s4")])
        assert "reject this proposal" in (refused.value.hint or "")
        assert _open(app, second) == {("proposed", "s4", "t1")}
        app.review("reject", second, match_ids=[_proposal(app, second, "s4")], reason="t1 paid s1")
        assert app.state(first).counts.matched == 1


def test_a_copied_manual_match_gets_an_id_of_its_run(runs: tuple[Path, str, str]) -> None:
    data, first, second = runs
    with Settler(data, user="olivia") as app:
        app.review("reject", first, match_ids=[_proposal(app, first, "s1")], reason="no")
        app.review("match", second, source_ids=["s1"], target_ids=["t1"], note="found")
        ids = {
            run: app.stream(run).filter(pl.col("event_type") == "RecordsManuallyMatched")["data"].to_list()
            for run in (first, second)
        }
    assert len(ids[first]) == len(ids[second]) == 1
    assert json.loads(ids[first][0])["match_id"] != json.loads(ids[second][0])["match_id"]


def test_a_run_completing_later_takes_over_the_decisions_already_made(
    first_day: tuple[Path, Path, str],
) -> None:
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        app.review("confirm", first, match_ids=[_proposal(app, first, "s1")])
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.details == {"decisions_taken_over": 1}
        assert _open(app, second.reconciliation_id) == {("proposed", "s2", "t2")}
        state = app.state(second.reconciliation_id)
        assert (state.counts.matched, state.counts.proposed, state.version) == (1, 1, second.version)
        # the decision it took over is its own event, made by the one who decided it
        taken = app.stream(second.reconciliation_id).filter(pl.col("event_type") == "MatchConfirmed")
        assert json.loads(taken["data"][0])["confirmed_by"] == "olivia"
        # and its opposite can no longer be recorded there
        proposed = app.stream(second.reconciliation_id).filter(pl.col("event_type") == "MatchProposed")
        ids = [json.loads(d)["match_id"] for d in proposed["data"] if json.loads(d)["source_ids"] == ["s1"]]
        assert len(ids) == 1
        with pytest.raises(NotFoundError):
            app.review("reject", second.reconciliation_id, match_ids=ids, reason="x")


def test_decisions_are_taken_over_in_their_order(first_day: tuple[Path, Path, str]) -> None:
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        app.review("reject", first, match_ids=[_proposal(app, first, "s1")], reason="not this one")
        app.review("dismiss", first, exception_ids=["unmatched:source:s1"], reason="refunded")
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.details == {"decisions_taken_over": 2}
        assert _open(app, second.reconciliation_id) == {("proposed", "s2", "t2"), ("unmatched:target:t1",)}
        assert _open(app, first) == {("proposed", "s3", "t3"), ("unmatched:target:t1",)}


def test_a_queued_run_executed_later_and_a_superseding_run_take_them_over(
    first_day: tuple[Path, Path, str],
) -> None:
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        queued = app.reconcile(spec, start=DAY2, end=DAY2, execute=False).reconciliation_id
        app.review(
            "confirm", first, match_ids=[_proposal(app, first, "s1")]
        )  # the queued run holds nothing yet
        executed = app.service.execute(queued, user_id="olivia")
        assert executed.details == {"decisions_taken_over": 1}
        assert _open(app, queued) == {("proposed", "s2", "t2")}
        again = app.reconcile(spec, start=DAY2, end=DAY2, supersede=True)
        assert again.details == {"decisions_taken_over": 1}
        assert _open(app, again.reconciliation_id) == {("proposed", "s2", "t2")}


def test_a_run_superseding_another_keeps_the_decisions_made_in_it(first_day: tuple[Path, Path, str]) -> None:
    """Reading the same days again (new inputs, a Dagster re-materialisation) loses no decision."""
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        app.review("confirm", first, match_ids=[_proposal(app, first, "s3")])
        app.review("reject", first, match_ids=[_proposal(app, first, "s1")], reason="wrong payout")
        decided = _open(app, first)
        again = app.reconcile(spec, start=DAY1, end=DAY1, supersede=True)
        assert again.details == {"decisions_taken_over": 2}
        assert app.state(first).status == "superseded"
        assert _open(app, again.reconciliation_id) == decided
        state = app.state(again.reconciliation_id)
        assert (state.counts.matched, state.counts.proposed) == (1, 0)


def _late_bank_line(tmp_path: Path, charge: str = "s1") -> tuple[Path, Path, Path]:
    """Day 1's ``charge`` is paid by t1 on day 2, a bank line that is not in the file yet when day 1
    is reconciled: day 1 reports the charge missing its settlement."""
    data, folder = tmp_path / "data", tmp_path / "inputs"
    spec = _job(folder)
    spec.write_text(SPEC.replace("auto_confirm: false", "auto_confirm: true"))
    (folder / "source.csv").write_text(HEADER + f"{charge},10.00,EUR,2026-11-26\n")
    (folder / "target.csv").write_text(HEADER)
    return data, folder, spec


def test_a_later_run_matching_a_record_closes_its_exception_in_the_earlier_run(tmp_path: Path) -> None:
    data, folder, spec = _late_bank_line(tmp_path)
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
        assert _open(app, first) == {("unmatched:source:s1",)}
        (folder / "target.csv").write_text(HEADER + "t1,10.00,EUR,2026-11-27\n")
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.details == {"closed_in": first}
        assert app.state(second.reconciliation_id).counts.matched == 1
        assert _open(app, first) == set()
        closed = app.stream(first).filter(pl.col("event_type") == e.EXCEPTION_DISMISSED)
        payload = json.loads(closed["data"][0])
        assert payload == {
            "exception_id": "unmatched:source:s1",
            "reason": f"matched in run {second.reconciliation_id} of the same job",
            "dismissed_by": "olivia",
        }
        # one atomic batch with the completion: caused by it
        completed = app.stream(second.reconciliation_id).filter(
            pl.col("event_type") == e.RECONCILIATION_COMPLETED
        )
        assert closed["causation_id"][0] == completed["event_id"][0]
        projections.update(app.store, data)
    exceptions = projections.read_model(data, "reconciliation_exceptions")
    assert exceptions.filter(pl.col("reconciliation_id") == first).height == 0


def _matched_on_day_two(app: Settler, folder: Path, spec: Path) -> str:
    """Reconcile day 1 (s1 missing its settlement), then day 2 once t1 arrived (it matches s1 and
    closes day 1's exception); returns day 1's run."""
    app.access.create_tenant("acme", admin="olivia")
    first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
    (folder / "target.csv").write_text(HEADER + "t1,10.00,EUR,2026-11-27\n")
    app.reconcile(spec, start=DAY2, end=DAY2)
    return first


def _read_models(app: Settler, data: Path, run: str) -> tuple[set[str], int]:
    """``run``'s open exception ids and open unmatched source count in the read models, after an
    update; a rebuild must give the same."""
    found = []
    for bring in (projections.update, projections.rebuild):
        bring(app.store, data)
        exceptions = projections.read_model(data, "reconciliation_exceptions")
        summary = projections.read_model(data, "reconciliation_summary")
        found.append(
            (
                set(exceptions.filter(pl.col("reconciliation_id") == run)["exception_id"].to_list()),
                summary.filter(pl.col("reconciliation_id") == run)["unmatched_source"].item(),
            )
        )
    assert found[0] == found[1]
    return found[0]


def test_superseding_the_run_that_matched_a_record_opens_its_exception_again(tmp_path: Path) -> None:
    """Day 2 matched day 1's s1 and closed its exception; the bank line was wrong and day 2 is read
    again without it: s1 is accounted for nowhere, so it is open again in day 1 (and a later re-read of
    day 1 does not take the stale closure over)."""
    data, folder, spec = _late_bank_line(tmp_path)
    with Settler(data, user="olivia") as app:
        first = _matched_on_day_two(app, folder, spec)
        assert _open(app, first) == set()
        (folder / "target.csv").write_text(HEADER)
        third = app.reconcile(spec, start=DAY2, end=DAY2, supersede=True)
        assert third.details == {"reopened_elsewhere": 1}
        assert _open(app, first) == {("unmatched:source:s1",)}
        assert app.state(first).counts.unmatched_source == 1
        again = app.stream(first).filter(pl.col("event_type") == e.RECORD_UNMATCHED)
        assert again.height == 2
        assert json.loads(again["data"][0]) == json.loads(again["data"][1])  # as the run recorded it
        completed = app.stream(third.reconciliation_id).filter(
            pl.col("event_type") == e.RECONCILIATION_COMPLETED
        )
        assert again["causation_id"][1] == completed["event_id"][0]  # in the completion's batch
        assert _read_models(app, data, first) == ({"unmatched:source:s1"}, 1)
        fourth = app.reconcile(spec, start=DAY1, end=DAY1, supersede=True)
        assert fourth.details == {}
        assert _open(app, fourth.reconciliation_id) == {("unmatched:source:s1",)}


def test_a_superseding_run_matching_the_record_too_keeps_it_closed_in_its_own_name(tmp_path: Path) -> None:
    data, folder, spec = _late_bank_line(tmp_path)
    with Settler(data, user="olivia") as app:
        first = _matched_on_day_two(app, folder, spec)
        third = app.reconcile(spec, start=DAY2, end=DAY2, supersede=True)
        assert third.details == {"closed_in": first, "reopened_elsewhere": 1}
        assert _open(app, first) == set()
        closures = app.stream(first).filter(pl.col("event_type") == e.EXCEPTION_DISMISSED)
        assert json.loads(closures["data"][-1])["reason"] == (
            f"matched in run {third.reconciliation_id} of the same job"
        )
        assert _read_models(app, data, first) == (set(), 0)


def test_a_persons_dismissal_after_a_reopening_stays(tmp_path: Path) -> None:
    data, folder, spec = _late_bank_line(tmp_path)
    with Settler(data, user="olivia") as app:
        first = _matched_on_day_two(app, folder, spec)
        (folder / "target.csv").write_text(HEADER)
        app.reconcile(spec, start=DAY2, end=DAY2, supersede=True)
        app.review("dismiss", first, exception_ids=["unmatched:source:s1"], reason="written off")
        assert app.reconcile(spec, start=DAY2, end=DAY2, supersede=True).details == {}
        assert _open(app, first) == set()


@pytest.mark.parametrize("charge", ["s\u00fc1", "\u0416-7", "\u4e2d1"])
def test_records_named_beyond_ascii_are_closed_and_refused_alike(tmp_path: Path, charge: str) -> None:
    """Bulk events hold such ids as UTF-8 and single events escaped: both are found."""
    data, folder, spec = _late_bank_line(tmp_path, charge)
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
        (folder / "target.csv").write_text(HEADER + "t1,10.00,EUR,2026-11-27\n")
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.details == {"closed_in": first}
        assert _open(app, first) == set()


def test_matches_of_a_failed_attempt_close_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Day 2's first attempt matches s1 and t1, then fails; t1 leaves the export and the retry matches
    nothing: s1 is still missing its settlement in day 1, and a confirmation there is not refused."""
    data, folder, spec = _late_bank_line(tmp_path)
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
        (folder / "target.csv").write_text(HEADER + "t1,10.00,EUR,2026-11-27\n")
        store_type, append = _completions_fail(app, monkeypatch)
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.status == "failed"
        assert e.RECORD_MATCHED in app.stream(second.reconciliation_id)["event_type"].to_list()
        monkeypatch.setattr(store_type, "append_frame", append)
        (folder / "target.csv").write_text(HEADER)
        again = app.retry(second.reconciliation_id)
        assert again.status == "completed" and "closed_in" not in again.details
        assert app.state(second.reconciliation_id).counts.matched == 0
        assert _open(app, first) == {("unmatched:source:s1",)}


def test_a_run_completing_after_another_matched_its_record_shows_no_exception_for_it(tmp_path: Path) -> None:
    """The other order: day 2 is reconciled first (it has the bank line), then day 1 from an export
    without it (the same job read from an older folder): its s1 is accounted for in day 2."""
    data, folder, spec = _late_bank_line(tmp_path)
    older = folder.parent / "older"
    older.mkdir()
    (older / "source.csv").write_text((folder / "source.csv").read_text())
    (older / "target.csv").write_text(HEADER)
    (older / "daily.yaml").write_text(spec.read_text())
    (folder / "target.csv").write_text(HEADER + "t1,10.00,EUR,2026-11-27\n")
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        second = app.reconcile(spec, start=DAY2, end=DAY2).reconciliation_id
        first = app.reconcile(older / "daily.yaml", start=DAY1, end=DAY1)
        assert first.details == {"matched_elsewhere": 1}
        assert _open(app, first.reconciliation_id) == set()
        assert _open(app, second) == set()
        state = app.state(first.reconciliation_id)
        assert (state.counts.unmatched_source, state.version) == (0, first.version)


def test_without_decisions_nearby_a_run_takes_nothing_over(first_day: tuple[Path, Path, str]) -> None:
    data, spec, _ = first_day
    with Settler(data, user="olivia") as app:
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert "decisions_taken_over" not in second.details
        assert _open(app, second.reconciliation_id) == {("proposed", "s1", "t1"), ("proposed", "s2", "t2")}


def test_the_completion_and_the_decisions_it_takes_over_are_one_atomic_batch(
    first_day: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash leaves both or neither: never a completed run that shows open an item already decided
    (where it could be decided again, the other way)."""
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        app.review("reject", first, match_ids=[_proposal(app, first, "s1")], reason="wrong payout")
        store_type = type(app.store)
        append = store_type.append_frame
        batches: list[list[str]] = []

        def recording(self: Any, frame: pl.DataFrame, **kwargs: Any) -> Any:
            batches.append(frame["event_type"].to_list())
            return append(self, frame, **kwargs)

        monkeypatch.setattr(store_type, "append_frame", recording)
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.details == {"decisions_taken_over": 1}
        assert batches[-1] == [e.RECONCILIATION_COMPLETED, e.MATCH_REJECTED]
        assert second.version == app.state(second.reconciliation_id).version


def test_a_completion_that_cannot_be_written_takes_nothing_over_and_its_retry_does(
    first_day: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, spec, first = first_day
    with Settler(data, user="olivia") as app:
        app.review("reject", first, match_ids=[_proposal(app, first, "s1")], reason="wrong payout")
        store_type, append = _completions_fail(app, monkeypatch)
        second = app.reconcile(spec, start=DAY2, end=DAY2)
        assert second.status == "failed"
        types = app.stream(second.reconciliation_id)["event_type"].to_list()
        assert e.RECONCILIATION_COMPLETED not in types and e.MATCH_REJECTED not in types
        monkeypatch.setattr(store_type, "append_frame", append)
        again = app.retry(second.reconciliation_id)
        assert (again.status, again.details.get("decisions_taken_over")) == ("completed", 1)
        reopened = {("unmatched:source:s1",), ("unmatched:target:t1",)}
        assert _open(app, second.reconciliation_id) == reopened | {("proposed", "s2", "t2")}


def test_a_match_by_hand_naming_a_record_of_the_next_days_run_says_where_it_is(tmp_path: Path) -> None:
    """s1 (day 1) and t9 (day 2, another amount) are open in two runs: the match by hand is refused
    naming the run that holds t9, and the hint's way (one run over both days) makes it possible."""
    data, folder = tmp_path / "data", tmp_path / "inputs"
    spec = _job(folder)
    (folder / "source.csv").write_text(HEADER + "s1,10.00,EUR,2026-11-26\n")
    (folder / "target.csv").write_text(HEADER + "t9,9.50,EUR,2026-11-27\n")
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        first = app.reconcile(spec, start=DAY1, end=DAY1).reconciliation_id
        second = app.reconcile(spec, start=DAY2, end=DAY2).reconciliation_id
        assert _open(app, second) == {("unmatched:target:t9",)}
        with pytest.raises(StateError) as refused:
            app.review("match", first, source_ids=["s1"], target_ids=["t9"], accept_difference=True, note="x")
        assert f"target record t9 is open in run {second} (2026-11-27)" in str(refused.value)
        assert "--from 2026-11-26 --to 2026-11-27 --supersede" in (refused.value.hint or "")
        both = app.reconcile(spec, start=DAY1, end=DAY2, supersede=True).reconciliation_id
        matched = app.review(
            "match", both, source_ids=["s1"], target_ids=["t9"], accept_difference=True, note="x"
        )
        assert _open(app, both) == set() and matched.events_appended == 1
