"""Every event of real runs (sample files through the command handlers: bulk per-record events and
single lifecycle and review events) is valid for its payload model, and its typed payload columns hold
exactly what its JSON says."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from settler_pipeline.domain import events as e
from settler_pipeline.domain.payload_schema import is_json_text
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler
from settler_pipeline.store import limits
from settler_pipeline.store.payloads import PAYLOAD_SCHEMA, TYPED

START, END = date(2026, 11, 2), date(2026, 11, 6)


def typed_value(model: type[e.EventData], name: str, value: Any) -> Any:
    return json.loads(value) if value is not None and is_json_text(model, name) else value


def test_every_event_of_real_runs_fits_its_model_and_its_typed_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "SEGMENT_ROWS", 500)  # a run's per-record batch goes straight to a segment
    spec, _ = write_sample_job(tmp_path / "inputs", records=1_200, start=date(2026, 11, 1), days=7, seed=5)
    with Settler(tmp_path / "data", user="alice") as app:
        app.access.create_tenant("acme", admin="alice")
        run = app.reconcile(spec, start=START, end=END).reconciliation_id
        state = app.state(run)
        proposals = sorted(state.open_proposals)
        app.review("confirm", run, match_id=proposals[0])
        app.review("reject", run, match_id=proposals[1], reason="wrong payer")
        unmatched = sorted(k for k in state.open_exceptions if k.startswith("unmatched:source:"))
        app.review("dismiss", run, exception_id=unmatched[0], reason="bank fee")
        target = spec.parent / "target.csv"
        shutil.move(target, tmp_path / "target.away")
        failed = app.reconcile(spec, start=END + timedelta(days=1), end=END + timedelta(days=1))
        shutil.move(tmp_path / "target.away", target)
        app.retry(failed.reconciliation_id)
        bulk_before_publish = (
            app.store.read(payload_fields=["match_id"])
            .filter(pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES)))
            .collect()
        )
        app.store.publish()  # the write-ahead tail (single events) goes to a segment
        rows = app.store.read(payload_fields=list(PAYLOAD_SCHEMA)).collect()

    assert bulk_before_publish.height > 1_000 and bulk_before_publish[TYPED].all(), "bulk events arrive typed"
    kinds = set(rows["event_type"])
    assert kinds >= {
        e.RECONCILIATION_STARTED,
        e.SOURCE_RECORDS_FETCHED,
        e.RECORD_MATCHED,
        e.MATCH_PROPOSED,
        e.RECORD_UNMATCHED,
        e.RECONCILIATION_COMPLETED,
        e.RECONCILIATION_FAILED,
        e.RECONCILIATION_RETRIED,
        e.MATCH_CONFIRMED,
        e.MATCH_REJECTED,
        e.EXCEPTION_DISMISSED,
    }
    assert rows[TYPED].all()
    for row in rows.iter_rows(named=True):
        model = e.PAYLOADS[row["event_type"]]
        payload = model.model_validate(json.loads(row["data"]))  # the stored JSON is valid for the model
        expected = payload.model_dump(mode="json")
        typed = {name: typed_value(model, name, row[name]) for name in model.model_fields}
        assert typed == expected, row["event_type"]
        others = [name for name in PAYLOAD_SCHEMA if name not in model.model_fields and row[name] is not None]
        assert not others, f"{row['event_type']} has values in other models' columns {others}"
