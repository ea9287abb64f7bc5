"""Review decisions on a real run: several ids in one command are one batch (all or none), ids are
accepted as `review list` prints them, and a manual match checks currency and tolerance."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline import projections
from settler_pipeline.errors import NotFoundError, StateError, ValidationError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DAY = date(2026, 11, 3)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, str]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=1_500, start=date(2026, 11, 1), days=5, seed=8)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        outcome = app.reconcile(spec, start=DAY, end=DAY)
    return data, outcome.reconciliation_id


def test_several_ids_are_one_batch_all_or_none(run: tuple[Path, str]) -> None:
    data, run_id = run
    with Settler(data, user="olivia") as app:
        state, items = app.review_items(run_id)
        proposals = [i["id"] for i in items if i["kind"] == "proposed"]
        assert len(proposals) >= 2, items
        head = app.store.head_position
        with pytest.raises(NotFoundError):
            app.review("confirm", run_id, match_ids=[proposals[0], "proposed:not-there"])
        assert app.store.head_position == head  # nothing of the batch was written
        with pytest.raises(ValidationError, match="listed twice"):
            app.review("confirm", run_id, match_ids=[proposals[0], proposals[0]])
        outcome = app.review("confirm", run_id[:13], match_ids=proposals[:2])
        assert outcome.events_appended == 2
        after = app.state(run_id)
    assert len(after.open_proposals) == len(state.open_proposals) - 2
    assert after.counts.matched == state.counts.matched + 2


def test_a_manual_match_across_currencies_is_refused(run: tuple[Path, str]) -> None:
    data, run_id = run
    with Settler(data, user="olivia") as app:
        _, items = app.review_items(run_id)
        sources = [i for i in items if i["kind"] == "unmatched" and i["source"]]
        targets = [i for i in items if i["kind"] == "unmatched" and i["target"]]
        pair = next(
            (
                (s, t)
                for s in sources
                for t in targets
                if s["source"][0]["currency"] != t["target"][0]["currency"]
            ),
            None,
        )
        if pair is None:
            pytest.skip("the sample left no unmatched pair in two currencies")
        head = app.store.head_position
        with pytest.raises(ValidationError, match="different currencies"):
            app.review(
                "match",
                run_id,
                source_ids=[pair[0]["id"]],
                target_ids=[pair[1]["id"]],
                accept_difference=True,
                note="n",
            )
        assert app.store.head_position == head


def test_a_difference_beyond_tolerance_needs_acceptance_and_a_note(run: tuple[Path, str]) -> None:
    data, run_id = run
    with Settler(data, user="olivia") as app:
        _, items = app.review_items(run_id)
        sources = [i for i in items if i["kind"] == "unmatched" and i["source"]]
        targets = [i for i in items if i["kind"] == "unmatched" and i["target"]]
        s, t = next(
            (s, t)
            for s in sources
            for t in targets
            if s["source"][0]["currency"] == t["target"][0]["currency"]
            and abs(s["source"][0]["amount_minor"] - t["target"][0]["amount_minor"]) > 1_000
        )
        ids = {"source_ids": [s["id"]], "target_ids": [t["id"]]}
        with pytest.raises(StateError, match="more than the job's tolerance"):
            app.review("match", run_id, **ids, note="looks right")
        with pytest.raises(ValidationError, match="needs a note"):
            app.review("match", run_id, **ids, accept_difference=True)
        outcome = app.review("match", run_id, **ids, accept_difference=True, note="agreed discount")
        assert outcome.events_appended == 1
        event = app.events(stream=run_id, event_types=["RecordsManuallyMatched"]).row(-1, named=True)
        projections.update(app.store, data)
        matches = app.read_model("reconciliation_matches")
    manual = matches.filter(pl.col("status") == "manual").row(0, named=True)
    assert manual["amount"] == s["source"][0]["amount_minor"]
    assert manual["amount_difference"] == t["target"][0]["amount_minor"] - s["source"][0]["amount_minor"]
    assert manual["currency"] == s["source"][0]["currency"] and manual["tenant"] == "acme"

    data_ = json.loads(event["data"])
    assert data_["difference_accepted"] is True
    assert data_["amount_difference"] == t["target"][0]["amount_minor"] - s["source"][0]["amount_minor"]


def test_quarantined_rows_are_listed_in_the_numeric_order_of_their_lines(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=12, start=DAY, days=1, seed=8)
    source = spec.parent / "source.csv"
    header, *rows = source.read_text().splitlines()
    bad = "ch_bad{},2026-11-03 01:00:00,1.00,EURO,bad currency,charge,Eve,,"
    lines = [header, rows[0], bad.format(0), *rows[1:], *(bad.format(i) for i in range(1, 4))]
    source.write_text("\n".join(lines) + "\n")
    with Settler(tmp_path / "data", user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        run_id = app.reconcile(spec, start=DAY, end=DAY).reconciliation_id
        _, items = app.review_items(run_id)
    numbers = [i["line_number"] for i in items if i["kind"] == "quarantined"]
    assert min(numbers) < 10 <= max(numbers), numbers  # "2" sorts after "13" as text
    assert numbers == sorted(numbers)


def test_a_manual_match_listing_a_record_twice_is_refused_before_the_amounts(run: tuple[Path, str]) -> None:
    data, run_id = run
    with Settler(data, user="olivia") as app:
        _, items = app.review_items(run_id)
        sources = [i for i in items if i["kind"] == "unmatched" and i["source"]]
        targets = [i for i in items if i["kind"] == "unmatched" and i["target"]]
        # counted twice, the source would be beyond the tolerance: the repeat is what must be reported
        s, t = next(
            (s, t)
            for s in sources
            for t in targets
            if s["source"][0]["currency"] == t["target"][0]["currency"]
            and abs(2 * s["source"][0]["amount_minor"] - t["target"][0]["amount_minor"]) > 1_000
        )
        head = app.store.head_position
        with pytest.raises(ValidationError, match="is listed twice") as refused:
            app.review("match", run_id, source_ids=[s["id"], s["id"]], target_ids=[t["id"]], note="n")
        assert refused.value.hint == "list each id once"
        with pytest.raises(ValidationError, match=r"target record .* is listed twice"):
            app.review("match", run_id, source_ids=[s["id"]], target_ids=[t["id"], t["id"]], note="n")
        assert app.store.head_position == head
