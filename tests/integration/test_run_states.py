"""Loading a big run leaves a snapshot, so the next load reads it and the few events after it (real
runs, a real log; the threshold is lowered so a small run counts as big)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

import settler_pipeline as sp
from settler_pipeline.application import run_states
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.session import Settler
from tests.integration.test_shared_items import SPEC  # the same daily job


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, str]:
    rows = "".join(f"r{i},{i}.00,EUR,2026-11-26\n" for i in range(1, 30))
    (tmp_path / "source.csv").write_text("id,amount,currency,date\n" + rows)
    (tmp_path / "target.csv").write_text("id,amount,currency,date\n" + rows.replace("r", "t"))
    (tmp_path / "daily.yaml").write_text(SPEC)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        done = app.reconcile(tmp_path / "daily.yaml", start=date(2026, 11, 26), end=date(2026, 11, 26))
    return data, done.reconciliation_id


def _snapshot(data: Path, run_id: str) -> int | None:
    with sp.EventStore.open(data, read_only=True) as store:
        found = store.get_latest_snapshot(
            run_id, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION
        )
        return None if found is None else found.aggregate_version


def test_a_load_folding_many_events_leaves_a_snapshot_the_next_load_starts_from(
    run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run_id = run
    assert _snapshot(data, run_id) is None
    monkeypatch.setattr(run_states, "SNAPSHOT_AFTER_EVENTS", 10)
    with Settler(data, user="olivia") as app:
        folded = app.service.load(run_id)
        assert _snapshot(data, run_id) == folded.version
        proposal = next(iter(folded.open_proposals))
        app.review("confirm", run_id, match_ids=[proposal])
        # the snapshot and the one event after it: the same state as folding every event
        again = app.service.load(run_id)
        assert again == agg.fold_frame(
            agg.ReconciliationState(), app.store.stream_frame(run_id, e.AGGREGATE_TYPE)
        )
        assert again.version == folded.version + 1
        # a past position is folded from the events, never from a later snapshot, and stores nothing
        assert app.service.load(run_id, as_of_position=folded.version - 5).version < folded.version


def test_a_small_load_or_a_read_only_log_stores_none(
    run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run_id = run
    with Settler(data, user="olivia") as app:
        app.service.load(run_id)
    assert _snapshot(data, run_id) is None  # fewer events than the threshold
    monkeypatch.setattr(run_states, "SNAPSHOT_AFTER_EVENTS", 10)
    with sp.EventStore.open(data, read_only=True) as store:
        assert run_states.load_run(store, run_id).status == agg.COMPLETED
    assert _snapshot(data, run_id) is None
