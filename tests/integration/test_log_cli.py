"""`settler log verify|compact|reindex|stats`: exit codes, JSON output, and one-line user errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import build_event, build_frame, bulk_batches_to_segments, uid

SETTLER = Path(sys.executable).parent / "settler"
ENV = {k: v for k, v in os.environ.items() if k not in ("SETTLER_DATA_DIR", "SETTLER_DEBUG")} | {
    "COLUMNS": "200"
}


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def settler(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SETTLER), *map(str, args)], capture_output=True, text=True, timeout=120, env=ENV
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small log: two segments and a write-ahead tail (shared by the tests that only read it)."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    with EventStore.open(data_dir) as store:
        store.append([build_event(uid(1)) for _ in range(3)])
        store.append_frame(build_frame(BULK_ROWS, streams=[uid(1), uid(2)], aggregate_type="Thing"))
        store.append_frame(build_frame(BULK_ROWS, streams=[uid(2)], aggregate_type="Thing"))
        store.append([build_event(uid(1), "Noted")])
    return data_dir


def test_verify_exits_0_on_a_healthy_log_and_reports_it_as_json(log_dir: Path) -> None:
    result = settler("log", "verify", "--data-dir", log_dir, "--json")
    assert result.returncode == 0, result.stderr
    report = json_of(result)
    head = 2 * BULK_ROWS + 4
    assert report["ok"] is True and report["problems"] == []
    assert (report["head_position"], report["events"], report["segments"], report["wal_events"]) == (
        head,
        head,
        2,
        1,
    )


def test_verify_without_json_says_the_log_is_consistent(log_dir: Path) -> None:
    result = settler("log", "verify", "-d", log_dir)
    assert result.returncode == 0, result.stderr
    assert "consistent" in result.stdout


def test_stats_reports_the_shape_of_the_log_as_json(log_dir: Path) -> None:
    result = settler("log", "stats", "--data-dir", log_dir, "--json")
    assert result.returncode == 0, result.stderr
    stats = json_of(result)
    assert stats["head_position"] == 2 * BULK_ROWS + 4
    assert stats["events_by_type"] == {"ThingHappened": 3, "RecordMatched": 2 * BULK_ROWS, "Noted": 1}
    assert stats["segments"] == 2 and stats["wal_events"] == 1


def test_verify_exits_3_on_a_corrupted_copy_and_names_the_segment(log_dir: Path, tmp_path: Path) -> None:
    with EventStore.open(log_dir) as store:
        store.copy_to(tmp_path / "copy")
    copy = tmp_path / "copy"
    victim = sorted((copy / "log" / "segments").rglob("*.parquet"))[-1]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    victim.write_bytes(bytes(blob))
    result = settler("log", "verify", "--data-dir", copy, "--json")
    assert result.returncode == 3  # damaged files of the data directory, as the README's exit codes say
    report = json_of(result)
    assert report["ok"] is False
    assert any(victim.name in problem for problem in report["problems"]), report["problems"]
    assert settler("log", "verify", "--data-dir", log_dir, "--json").returncode == 0


def _copy_of(log_dir: Path, copy: Path) -> Path:
    with EventStore.open(log_dir) as store:
        store.copy_to(copy)
    return copy


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_stats_reports_a_missing_or_cut_segment_and_exits_3(
    log_dir: Path, tmp_path: Path, damage: str
) -> None:
    copy = _copy_of(log_dir, tmp_path / "copy")
    victim = sorted((copy / "log" / "segments").rglob("seg-*.parquet"))[0]
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    result = settler("log", "stats", "--data-dir", copy, "--json")
    assert result.returncode == 3, result.stderr
    stats = json_of(result)
    assert len(stats["damaged"]) == 1 and victim.name in stats["damaged"][0], stats["damaged"]
    assert ("missing" if damage == "deleted" else "100 bytes") in stats["damaged"][0]
    assert "settler log verify" in result.stderr
    plain = settler("log", "stats", "--data-dir", copy)
    assert plain.returncode == 3 and "settler log verify" in plain.stderr and "Traceback" not in plain.stderr


def test_stats_counts_the_events_a_log_holds_after_a_loss_was_accepted(log_dir: Path, tmp_path: Path) -> None:
    copy = _copy_of(log_dir, tmp_path / "copy")
    sorted((copy / "log" / "segments").rglob("seg-*.parquet"))[0].unlink()
    repaired = settler("log", "repair", "--accept-loss", "--data-dir", copy, "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    result = settler("log", "stats", "--data-dir", copy, "--json")
    assert result.returncode == 0, result.stderr
    stats = json_of(result)
    assert stats["damaged"] == [] and stats["head_position"] == 2 * BULK_ROWS + 4
    held = DeltaTable(str(copy / "log" / "segments")).to_pyarrow_table().num_rows + stats["wal_events"]
    assert stats["events"] == sum(stats["events_by_type"].values()) == held < stats["head_position"]


def test_compact_then_reindex_keep_the_log_verifiable(log_dir: Path, tmp_path: Path) -> None:
    with EventStore.open(log_dir) as store:
        store.copy_to(tmp_path / "copy")
        before = store.read().collect()
    copy = tmp_path / "copy"
    compacted = settler("log", "compact", "--data-dir", copy, "--json", "--target-rows", "1000000")
    assert compacted.returncode == 0, compacted.stderr
    report = json_of(compacted)
    assert report["segments_after"] == 1 and len(report["retired"]) == report["segments_before"] >= 2
    reindexed = settler("log", "reindex", "--data-dir", copy, "--json")
    assert reindexed.returncode == 0, reindexed.stderr
    assert json_of(reindexed) == {"segments": 1, "events": 2 * BULK_ROWS + 4, "rebuilt_manifest": False}
    verified = settler("log", "verify", "--data-dir", copy, "--json")
    assert verified.returncode == 0 and json_of(verified)["ok"]
    with EventStore.open(copy) as store:
        assert store.read().collect().equals(before)


def test_reindex_rebuilds_a_deleted_commit_point_as_its_hint_promises(log_dir: Path, tmp_path: Path) -> None:
    with EventStore.open(log_dir) as store:
        store.copy_to(tmp_path / "copy")
    copy = tmp_path / "copy"
    shutil.rmtree(copy / "log" / "segments" / "_delta_log")
    refused = settler("log", "stats", "--data-dir", copy, "--json")
    assert refused.returncode != 0 and "settler log reindex" in refused.stderr
    assert "Traceback" not in refused.stderr
    rebuilt = settler("log", "reindex", "--data-dir", copy, "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json_of(rebuilt)["rebuilt_manifest"] is True
    verified = settler("log", "verify", "--data-dir", copy, "--json")
    assert verified.returncode == 0, verified.stdout
    assert json_of(verified)["head_position"] == 2 * BULK_ROWS + 4


def test_a_data_dir_that_is_a_file_is_a_one_line_user_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "events.parquet"
    not_a_dir.write_text("x")
    for command in ("verify", "reindex"):  # the two ways the commands open the store
        result = settler("log", command, "--data-dir", not_a_dir, "--json")
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, lines  # under --json the error is one JSON object
        error = json.loads(lines[0])
        assert str(not_a_dir) in error["error"] and error["hint"] and error["code"] == "validation"
        plain = settler("log", command, "--data-dir", not_a_dir)
        lines = [line for line in plain.stderr.splitlines() if line.strip()]
        assert lines[0].startswith("error:") and str(not_a_dir) in lines[0], lines
        assert all(line.startswith(("error:", "hint:")) for line in lines), lines


def test_an_unknown_log_command_fails_without_a_traceback(log_dir: Path) -> None:
    result = settler("log", "vacuum", "--data-dir", log_dir)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_an_unreadable_index_is_damaged_data_named_with_its_fix_and_repair_rebuilds_it(
    log_dir: Path, tmp_path: Path
) -> None:
    copy = _copy_of(log_dir, tmp_path / "copy")
    index = copy / "log" / "index.duckdb"
    index.write_bytes(os.urandom(5000))
    for args in (["log", "verify"], ["log", "stats"], ["project"]):
        result = settler(*args, "--data-dir", copy)
        assert result.returncode == 3, (args, result.stderr)  # damaged files, not a bug
        assert str(index) in result.stderr and "settler log reindex" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    repaired = settler("log", "repair", "--data-dir", copy, "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    actions = json_of(repaired)["actions"]
    assert any("unreadable index" in action for action in actions), actions
    assert json_of(settler("log", "verify", "--data-dir", copy, "--json"))["ok"] is True

    index.unlink()
    rebuilt = settler("log", "repair", "--data-dir", copy)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt the missing index" in rebuilt.stdout and "nothing to repair" not in rebuilt.stdout
    assert index.is_file() and settler("log", "verify", "--data-dir", copy).returncode == 0
    assert "nothing to repair" in settler("log", "repair", "--data-dir", copy).stdout
