"""Reconciliation runs end to end through the command handlers, on real files and a real event log."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain.matching import blocks as blocks_module
from settler_pipeline.errors import NotFoundError, PermissionDeniedError, StateError, ValidationError
from settler_pipeline.ids import new_id
from settler_pipeline.jobspec import load_job_spec
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler
from settler_pipeline.store import maintenance

START, END = date(2026, 11, 2), date(2026, 11, 6)


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=1_500, start=date(2026, 11, 1), days=7, seed=3)
    data = tmp_path / "data"
    with Settler(data, user="alice") as app:
        tenant = app.access.create_tenant("acme", admin="alice")
        app.access.grant("olga", tenant.tenant_id, "operator", by="alice")
        app.access.grant("vic", tenant.tenant_id, "viewer", by="alice")
        other = app.access.create_tenant("globex", admin="gary")
        del other
    return data, spec


def run_events(app: Settler, run_id: str) -> pl.DataFrame:
    return app.store.stream_frame(run_id, e.AGGREGATE_TYPE)


def test_a_run_records_every_decision_as_events_with_tenant_correlation_and_causation(
    workspace: tuple[Path, Path],
) -> None:
    data, spec = workspace
    with Settler(data, user="olga") as app:
        outcome = app.reconcile(spec, start=START, end=END)
        assert outcome.status == "completed" and outcome.summary is not None
        frame = run_events(app, outcome.reconciliation_id)
    counts = dict(frame.group_by("event_type").len().iter_rows())
    summary = outcome.summary
    assert counts[e.RECONCILIATION_STARTED] == 1 and counts[e.RECONCILIATION_COMPLETED] == 1
    assert counts.get(e.RECORD_MATCHED, 0) == summary["matched_count"]
    assert counts.get(e.MATCH_PROPOSED, 0) == summary["proposed_count"]
    assert counts.get(e.DUPLICATE_DETECTED, 0) == summary["duplicate_count"]
    assert frame["tenant_id"].n_unique() == 1
    assert frame["correlation_id"].n_unique() == 1 and frame["correlation_id"][0] == outcome.correlation_id
    started_id = frame.filter(pl.col("event_type") == e.RECONCILIATION_STARTED)["event_id"][0]
    later = frame.filter(pl.col("event_type") != e.RECONCILIATION_STARTED)
    assert later["causation_id"].to_list() == [started_id] * later.height
    assert frame["aggregate_version"].to_list() == list(range(1, frame.height + 1))


def test_every_input_record_is_accounted_for_and_no_record_is_used_twice(
    workspace: tuple[Path, Path],
) -> None:
    data, spec = workspace
    with Settler(data, user="olga") as app:
        outcome = app.reconcile(spec, start=START, end=END)
        frame = run_events(app, outcome.reconciliation_id)
    fetched = {
        row["event_type"]: json.loads(row["data"])
        for row in frame.filter(pl.col("event_type").str.ends_with("RecordsFetched")).iter_rows(named=True)
    }
    payloads = [json.loads(d) for d in frame["data"]]
    kinds = frame["event_type"].to_list()
    for side, fetched_type in (("source", e.SOURCE_RECORDS_FETCHED), ("target", e.TARGET_RECORDS_FETCHED)):
        info = fetched[fetched_type]
        assert info["total_rows"] == info["count"] + info["quarantined_count"] + info["out_of_window_count"]
        ids_key = f"{side}_ids"
        in_matches = [
            i
            for k, p in zip(kinds, payloads, strict=True)
            if k in (e.RECORD_MATCHED, e.MATCH_PROPOSED)
            for i in p[ids_key]
        ]
        assert len(in_matches) == len(set(in_matches)), "a record was used by two matches"
        unmatched = [
            p for k, p in zip(kinds, payloads, strict=True) if k == e.RECORD_UNMATCHED and p["side"] == side
        ]
        duplicates = [
            p for k, p in zip(kinds, payloads, strict=True) if k == e.DUPLICATE_DETECTED and p["side"] == side
        ]
        assert len(in_matches) + len(unmatched) + len(duplicates) == info["count"]


def test_the_same_command_twice_with_an_idempotency_key_runs_once(workspace: tuple[Path, Path]) -> None:
    data, spec = workspace
    with Settler(data, user="olga") as app:
        first = app.reconcile(spec, start=START, end=END, idempotency_key="nightly-2026-11-06")
        head = app.store.head_position
        again = app.reconcile(spec, start=START, end=END, idempotency_key="nightly-2026-11-06")
        assert again.repeated_command and app.store.head_position == head
        assert again.reconciliation_id == first.reconciliation_id
        assert again.summary == first.summary


def test_permissions_are_tenant_scoped(workspace: tuple[Path, Path]) -> None:
    data, spec = workspace
    with Settler(data, user="vic") as viewer, pytest.raises(PermissionDeniedError, match="needs operator"):
        viewer.reconcile(spec, start=START, end=END, tenant="acme")
    with Settler(data, user="gary") as outsider, pytest.raises(PermissionDeniedError):
        outsider.reconcile(spec, start=START, end=END, tenant="acme")
    with Settler(data, user="olga") as operator:
        run = operator.reconcile(spec, start=START, end=END).reconciliation_id
    with Settler(data, user="gary") as outsider, pytest.raises(NotFoundError):
        outsider.state(run)
    with Settler(data, user="vic") as viewer:
        assert viewer.state(run).status == "completed"
        with pytest.raises(PermissionDeniedError):
            viewer.cancel(run, "no")


def test_a_missing_input_file_fails_the_run_with_a_clear_event_and_a_retry_completes_it(
    workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    data, spec = workspace
    moved = tmp_path / "target.csv.away"
    target = spec.parent / "target.csv"
    shutil.move(target, moved)
    with Settler(data, user="olga") as app:
        failed = app.reconcile(spec, start=START, end=END)
        assert failed.status == "failed"
        assert failed.error is not None and "not found" in failed.error["message"]
        assert failed.error["step"] == "fetch_target"
        with pytest.raises(StateError, match="already exists"):
            app.reconcile(spec, start=START, end=END, reconciliation_id=failed.reconciliation_id)
        shutil.move(moved, target)
        # another job's spec would reconcile that job's days under this run's job
        other = spec.with_name("other-job.yaml")
        other.write_text(re.sub(r"(?m)^name: .*$", "name: other-job", spec.read_text()))
        head = app.store.head_position
        with pytest.raises(ValidationError, match="is a run of job") as refused:
            app.retry(failed.reconciliation_id, spec_path=other)
        assert "other-job" in str(refused.value) and app.store.head_position == head
        retried = app.retry(failed.reconciliation_id)
        assert (retried.status, retried.attempt) == ("completed", 2)
        with pytest.raises(StateError, match="only a failed, cancelled or abandoned"):
            app.retry(failed.reconciliation_id)
        kinds = run_events(app, failed.reconciliation_id)["event_type"].to_list()
        assert kinds[:2] == [e.RECONCILIATION_STARTED, e.RECONCILIATION_FAILED]
        assert kinds[2] == e.RECONCILIATION_RETRIED and kinds[-1] == e.RECONCILIATION_COMPLETED
        assert maintenance.verify(app.store).ok


def test_bad_rows_are_quarantined_counted_and_kept(workspace: tuple[Path, Path]) -> None:
    data, spec = workspace
    source = spec.parent / "source.csv"
    lines = source.read_text().splitlines()
    lines.insert(5, "ch_broken,2026-11-03 10:00:00,12.3x,eur,oops,charge,Someone,,")
    lines.insert(9, "ch_baddate,2026-13-45 10:00:00,10.00,eur,oops,charge,Someone,,")
    source.write_text("\n".join(lines) + "\n")
    with Settler(data, user="olga") as app:
        outcome = app.reconcile(spec, start=START, end=END)
        frame = run_events(app, outcome.reconciliation_id)
    quarantined = [json.loads(d) for d in frame.filter(pl.col("event_type") == e.RECORD_QUARANTINED)["data"]]
    assert {q["line_number"] for q in quarantined} == {5, 9}
    assert all(q["side"] == "source" and q["raw"] and q["reason"] for q in quarantined)
    assert outcome.summary is not None and outcome.summary["quarantined_count"] == 2


def test_a_finished_run_refuses_cancel_and_review_decisions_are_events(workspace: tuple[Path, Path]) -> None:
    data, spec = workspace
    with Settler(data, user="olga") as app:
        outcome = app.reconcile(spec, start=START, end=END)
        run = outcome.reconciliation_id
        with pytest.raises(StateError, match="cannot be cancelled"):
            app.cancel(run, "too late")
        state = app.state(run)
        exception_id = next(k for k in state.open_exceptions if k.startswith("unmatched:"))
        app.review("dismiss", run, exception_id=exception_id, reason="bank fee")
        assert exception_id not in app.state(run).open_exceptions
        with pytest.raises(NotFoundError):
            app.review("dismiss", run, exception_id=exception_id, reason="again")
        proposals = list(app.state(run).open_proposals)
        if proposals:
            app.review("confirm", run, match_id=proposals[0])
            assert proposals[0] not in app.state(run).open_proposals
        before = app.state(run, at_position=app.store.head_position - 1)
        assert before.version < app.state(run).version
        assert app.state(run, at_position=app.store.head_position).version == app.state(run).version
        with pytest.raises(ValidationError, match="past the log's head"):
            app.state(run, at_position=app.store.head_position + 1)


def test_a_typed_timestamp_column_is_parsed_as_iso_in_a_run_whatever_dates_format_says(
    workspace: tuple[Path, Path],
) -> None:
    # The stripe preset says dates.format "%Y-%m-%d %H:%M:%S"; a Parquet timestamp column reads as
    # ISO text with fractional seconds, which that format would reject row by row.
    data, spec = workspace
    csv = pl.read_csv(spec.parent / "source.csv", infer_schema=False)
    csv.with_columns(pl.col("created").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us")).write_parquet(
        spec.parent / "source.parquet"
    )
    typed = spec.with_name("typed.yaml")
    text = spec.read_text().replace(
        "adapter: csv\n  path: source.csv", "adapter: parquet\n  path: source.parquet"
    )
    assert "source.parquet" in text
    typed.write_text(text)
    with Settler(data, user="olga") as app:
        from_csv = app.reconcile(spec, start=START, end=END)
        from_parquet = app.reconcile(typed, start=START, end=END, supersede=True)
    assert from_csv.summary is not None and from_parquet.summary is not None
    assert from_parquet.status == "completed"
    assert from_parquet.summary["quarantined_count"] == from_csv.summary["quarantined_count"] == 0
    assert from_parquet.summary["matched_count"] == from_csv.summary["matched_count"] > 0


def test_each_append_of_a_run_stamps_its_events_with_the_time_of_that_append(
    workspace: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = blocks_module.stage_matches

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(blocks_module, "stage_matches", slow)
    data, spec = workspace
    with Settler(data, user="olga") as app:
        outcome = app.reconcile(spec, start=START, end=END)
        frame = run_events(app, outcome.reconciliation_id)
    assert outcome.summary is not None
    at = {kind: group["timestamp"] for (kind,), group in frame.group_by("event_type")}
    fetched = at[e.SOURCE_RECORDS_FETCHED].max()
    matched = at[e.RECORD_MATCHED]
    completed = at[e.RECONCILIATION_COMPLETED].item()
    assert matched.min() - fetched >= timedelta(seconds=0.5)  # matching took that long
    assert completed >= matched.max()
    took = completed - at[e.RECONCILIATION_STARTED].item()
    assert took >= timedelta(milliseconds=outcome.summary["duration_ms"]) >= timedelta(seconds=0.5)


def test_a_run_whose_job_id_is_not_its_specs_name_retries_with_its_own_spec(
    workspace: tuple[Path, Path],
) -> None:
    """Only a spec the retry brings must be the run's job; the run's own spec is always its own."""
    data, spec_path = workspace
    with Settler(data, user="olga") as app:
        spec = load_job_spec(spec_path)
        cmd = c.build(
            c.StartReconciliation,
            reconciliation_id=new_id(),
            tenant_id=app.tenant("acme").tenant_id,
            user_id="olga",
            job_id="payouts-eu",  # the Python API may name the job otherwise than the spec
            source_adapter="csv",
            target_adapter="csv",
            date_range=c.DateRange(start=START, end=END),
            spec=spec.model_dump(mode="json"),
            spec_dir=str(spec.base_dir),
        )
        run = app.service.start(cmd, execute=False).reconciliation_id
        app.cancel(run, "later")
        retried = app.retry(run)
        assert (retried.status, app.state(run).job_id) == ("completed", "payouts-eu")
