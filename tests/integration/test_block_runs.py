"""A run over more records than one block (read, spilled to Parquet, matched and appended block by
block) settles every record once and agrees with the same run matched whole."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.adapters.spill import spill_folder
from settler_pipeline.domain import events as e
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

START, END = date(2026, 11, 2), date(2026, 11, 6)


def _run(tmp_path: Path, name: str, block_records: int | None) -> tuple[dict[str, Any], pl.DataFrame]:
    spec, _ = write_sample_job(tmp_path / name, records=3_000, start=date(2026, 11, 1), days=7, seed=7)
    if block_records is not None:
        text = spec.read_text().replace(
            "date_window_days: 3", f"date_window_days: 3\nblock_records: {block_records}"
        )
        spec.write_text(text)
    with Settler(tmp_path / f"{name}-data", user="alice") as app:
        app.access.create_tenant("acme", admin="alice")
        outcome = app.reconcile(spec, start=START, end=END)
        assert outcome.status == "completed" and outcome.summary is not None
        events = (
            app.store.read(payload_fields=["side", "record_id", "line_number", "source_ids", "target_ids"])
            .filter(pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES)))
            .collect()
        )
        state = app.state(outcome.reconciliation_id)
    assert state.status == "completed"
    return outcome.summary, events


def _settled(events: pl.DataFrame, side: str) -> list[str]:
    """Every record id of ``side`` a per-record event settled (matched, proposed or unmatched)."""
    kinds = pl.col("event_type")
    ids = events.filter(kinds.is_in([e.RECORD_MATCHED, e.MATCH_PROPOSED]))[f"{side}_ids"].explode().to_list()
    unmatched = events.filter((kinds == e.RECORD_UNMATCHED) & (pl.col("side") == side))
    return [*ids, *unmatched["record_id"].to_list()]


def test_a_run_cut_into_blocks_settles_every_record_once_like_a_whole_run(tmp_path: Path) -> None:
    whole, whole_events = _run(tmp_path, "whole", None)
    cut, cut_events = _run(tmp_path, "cut", 1_000)
    for side in ("source", "target"):
        settled = _settled(cut_events, side)
        # ids repeat only where the input repeats them (duplicates are set aside, not settled)
        assert sorted(settled) == sorted(_settled(whole_events, side))
    assert cut["total_source_records"] == whole["total_source_records"]
    assert cut["duplicate_count"] == whole["duplicate_count"] > 0
    assert (
        abs(cut["matched_source_records"] - whole["matched_source_records"])
        <= 0.005 * whole["matched_source_records"]
    )
    sides = ("source", "target")
    assert all(
        cut[f"matched_{s}_records"] + cut[f"unmatched_{s}_count"] <= cut[f"total_{s}_records"] for s in sides
    )


def test_a_runs_work_folder_is_removed_and_so_are_those_of_dead_processes_only(tmp_path: Path) -> None:
    work = tmp_path / "work"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = work / f"run-{gone.pid}-abc"
    alive = work / f"run-{os.getpid()}-def"  # this process: alive
    foreign = work / "run-not-a-pid"  # not named by a run: left alone
    other = work / "notes"
    for folder in (dead, alive, foreign, other):
        folder.mkdir(parents=True)
    with spill_folder(work) as mine:
        assert mine.parent == work and mine.name.startswith(f"run-{os.getpid()}-")
        assert not dead.exists() and alive.exists() and foreign.exists() and other.exists()
    assert not mine.exists()


def test_a_blocks_events_go_in_chunks_that_run_across_matches_and_unmatched_records(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from settler_pipeline.application import attempt
    from settler_pipeline.store.writer import LogWriter

    whole, whole_events = _run(tmp_path, "whole", None)
    per_record = pl.col("event_type").is_in([e.RECORD_MATCHED, e.MATCH_PROPOSED, e.RECORD_UNMATCHED])
    sizes: list[int] = []
    append_frame = LogWriter.append_frame

    def counted(self: LogWriter, frame: pl.DataFrame, *args: Any, **kwargs: Any) -> list[int]:
        sizes.append(frame.filter(per_record).height)
        return append_frame(self, frame, *args, **kwargs)

    monkeypatch.setattr(LogWriter, "append_frame", counted)
    monkeypatch.setattr(attempt, "EVENT_CHUNK", 700)
    chunked, chunked_events = _run(tmp_path, "chunked", None)
    assert {k: v for k, v in chunked.items() if k != "duration_ms"} == {
        k: v for k, v in whole.items() if k != "duration_ms"
    }
    for side in ("source", "target"):
        assert sorted(_settled(chunked_events, side)) == sorted(_settled(whole_events, side))
    # after the fetch's own batch, every append of results holds a whole chunk but the last
    settled = chunked_events.filter(per_record).height
    results = [n for n in sizes[1:] if n]
    assert all(n == 700 for n in results[:-1]) and 0 < results[-1] <= 700
    assert sizes[0] + sum(results) == settled
    # matches first, then the unmatched records, in one order across the chunks
    kinds = chunked_events.filter(per_record)["event_type"].slice(sizes[0])
    unmatched = (kinds == e.RECORD_UNMATCHED).to_list()
    assert unmatched == sorted(unmatched)
