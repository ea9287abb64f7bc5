"""Records read only as margin (the days around a run's range) are counterparts, not the run's own
records: they do not count in its match rate, and an item (match, proposal, duplicate group) made only
of them is not the run's (real CSV files, the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from settler_pipeline import projections
from settler_pipeline.cli.main import app
from settler_pipeline.session import Settler

HEADER = "id,amount,currency,date\n"
SPEC = """name: {name}
source:
  adapter: csv
  path: {name}-source.csv
  columns: {{record_id: id, amount: amount, currency: currency, occurred_at: date}}
target:
  adapter: csv
  path: {name}-target.csv
  columns: {{record_id: id, amount: amount, currency: currency, occurred_at: date}}
"""


def _store(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("t", admin="olivia")
    return data


def _reconcile(
    data: Path, name: str, source: list[str], target: list[str], day: str, extra: str = ""
) -> dict[str, object]:
    folder = data.parent
    (folder / f"{name}-source.csv").write_text(HEADER + "".join(f"{row}\n" for row in source))
    (folder / f"{name}-target.csv").write_text(HEADER + "".join(f"{row}\n" for row in target))
    (folder / f"{name}.yaml").write_text(SPEC.format(name=name) + extra)
    result = CliRunner().invoke(
        app,
        ["reconcile", str(folder / f"{name}.yaml"), "--tenant", "t", "--from", day, "--json"],
        env={"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"},
    )
    assert result.exit_code == 0, result.stderr
    summary: dict[str, object] = json.loads(result.stdout)["summary"]
    return summary


def test_the_match_rate_counts_only_the_runs_own_source_records(tmp_path: Path) -> None:
    data = _store(tmp_path)
    # s1 and t1 lie the day before the run's range: read as margin, matched to each other.
    summary = _reconcile(
        data,
        "rate",
        ["s1,10.00,EUR,2026-11-25", "s2,99.00,EUR,2026-11-26"],
        ["t1,10.00,EUR,2026-11-25"],
        "2026-11-26",
    )
    assert summary["match_rate"] == 0.0  # s2, the run's only own source record, is unmatched
    empty = _reconcile(data, "empty", ["s1,10.00,EUR,2026-11-25"], ["t1,10.00,EUR,2026-11-25"], "2026-11-26")
    assert empty["match_rate"] is None  # no source record of its own: an empty run, not 100 %


def test_items_made_only_of_margin_records_are_outside_the_range_in_events_and_read_models(
    tmp_path: Path,
) -> None:
    data = _store(tmp_path)
    every_match_proposed = "matching: {passes: [{kind: amount_date, auto_confirm: false}]}\n"
    summary = _reconcile(
        data,
        "items",
        [
            "s1,10.00,EUR,2026-11-25",  # with t1: a proposal of margin records only
            "s2,20.00,EUR,2026-11-26",  # with t2: the run's proposal
            "s3,30.00,EUR,2026-11-25",  # margin, with t3 in range: the run's proposal too
            "d1,40.00,EUR,2026-11-24",
            "d1,40.00,EUR,2026-11-24",  # a duplicate of margin records only
            "d2,50.00,EUR,2026-11-26",
            "d2,50.00,EUR,2026-11-26",  # the run's duplicate
        ],
        ["t1,10.00,EUR,2026-11-25", "t2,20.00,EUR,2026-11-26", "t3,30.00,EUR,2026-11-26"],
        "2026-11-26",
        extra=every_match_proposed,
    )
    assert (summary["proposed_count"], summary["matched_count"], summary["duplicate_count"]) == (2, 0, 1)
    assert (summary["unmatched_source_count"], summary["unmatched_target_count"]) == (1, 0)  # d2
    assert summary["match_rate"] == 0.0  # s2 proposed, d2 unmatched: s3 and the rest are margin

    with Settler(data, user="olivia") as settler:
        run = settler.run_ids()[0]
        state = settler.state(run)
        frame = settler.stream(run)
        projections.update(settler.store, data)
    events = [(kind, json.loads(text)) for kind, text in frame.select("event_type", "data").iter_rows()]
    outside = sorted(
        (payload["side"], payload["record_id"])
        for kind, payload in events
        if kind == "RecordUnmatched" and payload["reason"] == "outside_range"
    )
    assert outside == [("source", "d1"), ("source", "d1"), ("source", "s1"), ("target", "t1")]
    proposed = [payload for kind, payload in events if kind == "MatchProposed"]
    assert sorted(p["source_ids"][0] for p in proposed) == ["s2", "s3"]
    duplicates = [payload for kind, payload in events if kind == "DuplicateRecordDetected"]
    assert [d["record_id"] for d in duplicates] == ["d2"]

    review = sorted(state.open_exceptions)
    assert review == sorted(
        [f"proposed:{p['match_id']}" for p in proposed]
        + [f"duplicate:source:{duplicates[0]['line_number']}", "unmatched:source:d2"]
    )
    exceptions = projections.read_model(data, "reconciliation_exceptions")
    assert sorted(exceptions.filter(pl.col("reconciliation_id") == run)["exception_id"]) == review
    row = projections.read_model(data, "reconciliation_summary").row(0, named=True)
    assert (row["proposed"], row["matched"], row["duplicates"], row["unmatched_source"]) == (2, 0, 1, 1)
    matches = projections.read_model(data, "reconciliation_matches").filter(
        pl.col("reconciliation_id") == run
    )
    assert sorted(matches["match_id"]) == sorted(p["match_id"] for p in proposed)
