"""The results an attempt appended block by block before it failed are not the run's: the read models
(matches, open items), the aggregate's open items (what review offers) and a rebuild all leave them
out, and the attempt's outcome counts every event it appended."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from settler_pipeline import projections
from settler_pipeline.domain import events as e
from settler_pipeline.domain.matching.blocks import BlockMatcher
from settler_pipeline.errors import ValidationError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

START, END = date(2026, 11, 2), date(2026, 11, 6)
FAILING_CALL = 5


def _fail_on_fifth_block(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = BlockMatcher.feed
    calls = {"n": 0}

    def failing(self: BlockMatcher, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == FAILING_CALL:
            raise ValidationError("a block could not be matched")
        return feed(self, *args, **kwargs)

    monkeypatch.setattr(BlockMatcher, "feed", failing)


def _rows(data: Path, name: str, run: str) -> pl.DataFrame:
    return projections.read_model(data, name).filter(pl.col("reconciliation_id") == run)


def test_a_failed_block_wise_attempt_shows_no_results_until_its_retry_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=3_000, start=date(2026, 11, 1), days=7, seed=7)
    cut = "date_window_days: 3\nblock_records: 1000"  # cut into blocks
    spec.write_text(spec.read_text().replace("date_window_days: 3", cut))
    data = tmp_path / "data"
    with Settler(data, user="alice") as app:
        app.access.create_tenant("acme", admin="alice")
        with monkeypatch.context() as patched:
            _fail_on_fifth_block(patched)
            failed = app.reconcile(spec, start=START, end=END)
        run = failed.reconciliation_id
        assert failed.status == "failed"
        log = app.store.read().filter(pl.col("aggregate_id") == run).collect()
        results = log.filter(pl.col("event_type").is_in([e.RECORD_MATCHED, e.MATCH_PROPOSED]))
        assert results.height > 0  # the blocks before the failing one appended their results
        started = log.filter(pl.col("event_type") == e.RECONCILIATION_STARTED).height
        assert failed.events_appended == log.height - started  # every event the attempt appended
        projections.update(app.store, data)
        state, items = app.review_items(run)
        assert (state.status, state.open_exceptions, state.open_proposals, items) == ("failed", {}, {}, [])
        assert _rows(data, "reconciliation_matches", run).height == 0
        assert _rows(data, "reconciliation_exceptions", run).height == 0

        # a rebuild from the log agrees with the update
        projections.rebuild(app.store, data)
        assert _rows(data, "reconciliation_matches", run).height == 0
        assert _rows(data, "reconciliation_exceptions", run).height == 0

        retried = app.retry(run)
        assert retried.status == "completed" and retried.summary is not None
        projections.update(app.store, data)
        state = app.state(run)
        matches = _rows(data, "reconciliation_matches", run)
        exceptions = _rows(data, "reconciliation_exceptions", run)
    assert matches.height > 0 and matches["attempt"].unique().to_list() == [2]
    assert exceptions["attempt"].unique().to_list() == [2]
    assert sorted(exceptions["exception_id"].to_list()) == sorted(state.open_exceptions)
    matched = matches.filter(pl.col("status") == "matched")
    assert matched["source_ids"].list.len().sum() == retried.summary["matched_source_records"]
