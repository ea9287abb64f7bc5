"""A segment file the commit point names goes missing (deleted by hand, or an older transaction log put
back after a compaction replaced the files it names). Nothing is moved aside on open, `repair` never
turns a missing file into lost positions, and the events come back once the file is restored."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from settler_pipeline.errors import CorruptionError
from settler_pipeline.store import maintenance
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import MakeFrame, bulk_batches_to_segments, uid
from tests.integration.test_log_cli import json_of, settler
from tests.integration.test_log_damage import contents
from tests.integration.test_log_torn_commit import positions

OpenStore = Callable[..., EventStore]
STREAM = uid(3)


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def three_segments(store: EventStore, make_frame: MakeFrame) -> EventStore:
    """``store`` with three segments of ``BULK_ROWS`` events each (positions from 1)."""
    for _ in range(3):
        store.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    return store


def test_a_missing_newest_segment_is_reported_not_recorded_as_lost_and_comes_back_when_restored(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path, tmp_path: Path
) -> None:
    writer = three_segments(open_store(), make_frame)
    head = 3 * BULK_ROWS
    newest = max(writer.segments_dir.rglob("seg-*.parquet"), key=lambda p: p.name)
    backup = tmp_path / newest.name
    shutil.move(newest, backup)

    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok and any(newest.name in p for p in report.problems), report.problems

    repaired = maintenance.repair(open_store())
    assert not repaired.ok
    assert any(newest.name in p and "restore" in p for p in repaired.unresolved), repaired.unresolved
    assert repaired.lost == [], "a missing file is not a loss: it can be put back"
    with pytest.raises(CorruptionError, match=newest.name):
        open_store().read().collect()

    shutil.move(backup, newest)  # what the report says to do
    restored = open_store()
    assert positions(restored) == list(range(1, head + 1))
    assert restored.append_frame(make_frame(10, streams=[STREAM], aggregate_type="Thing"))[0] == head + 1
    assert maintenance.verify(open_store(read_only=True)).ok


def test_an_older_transaction_log_put_back_after_a_compaction_moves_nothing_and_repair_restores_it(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path, tmp_path: Path
) -> None:
    writer = three_segments(open_store(), make_frame)
    expected = writer.read().collect().sort("global_position")
    transaction_log = writer.segments_dir / "_delta_log"
    shutil.copytree(transaction_log, tmp_path / "backup")
    compacted = maintenance.compact(writer, target_rows=10 * BULK_ROWS)
    assert (compacted.segments_before, compacted.segments_after) == (3, 1)
    maintenance.compact(writer, grace_hours=0)  # the grace period over: the replaced files are deleted
    assert not any((writer.segments_dir / p).exists() for p in compacted.retired)
    shutil.rmtree(transaction_log)
    shutil.copytree(tmp_path / "backup", transaction_log)  # names the files compaction replaced
    before = contents(data_dir)

    assert not maintenance.verify(open_store(read_only=True)).ok
    reopened = open_store()
    assert contents(data_dir) == before, "the merged segment, the only live copy, stays where it is"

    repaired = maintenance.repair(reopened)
    assert repaired.ok, repaired.unresolved
    assert repaired.lost == []
    assert open_store().read().collect().sort("global_position").equals(expected)
    assert maintenance.verify(open_store(read_only=True)).ok


@pytest.mark.parametrize("which", ["newest", "middle"])
def test_without_a_backup_repair_accept_loss_records_the_missing_positions_and_the_log_goes_on(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path, which: str
) -> None:
    writer = three_segments(open_store(), make_frame)
    writer.close()
    files = sorted(writer.segments_dir.rglob("seg-*.parquet"), key=lambda p: p.name)
    gone = files[-1] if which == "newest" else files[1]
    first, last = (int(part) for part in gone.name.split("-")[1:3])
    gone.unlink()

    blocked = settler("project", "--data-dir", data_dir)
    assert blocked.returncode == 3, blocked.stderr  # damaged data: neither a bug nor a user's mistake
    assert gone.name in blocked.stderr and "Traceback" not in blocked.stderr
    refused = settler("log", "repair", "--data-dir", data_dir)
    assert refused.returncode == 1 and "--accept-loss" in refused.stdout + refused.stderr
    accepted = settler("log", "repair", "--accept-loss", "--data-dir", data_dir, "--json")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert json_of(accepted)["lost"] == [[first, last]]

    reopened = open_store()
    kept = [p for p in range(1, 3 * BULK_ROWS + 1) if not first <= p <= last]
    assert positions(reopened) == kept
    assert (
        reopened.append_frame(make_frame(10, streams=[uid(4)], aggregate_type="Thing"))[0]
        == 3 * BULK_ROWS + 1
    )
    report = maintenance.verify(open_store(read_only=True))
    assert report.ok and report.lost == [(first, last)], report.problems
