"""Damage to the log's files is detected, reported by `verify` (which changes nothing), refused by reads
and appends with CorruptionError, and `repair` keeps every intact event without reusing a position.

Every case damages real files the way a disk, an operator or a bad restore would."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline.errors import CorruptionError
from settler_pipeline.store import maintenance, wal
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from tests.factories import MakeEvent, MakeFrame, bulk_batches_to_segments, uid

OpenStore = Callable[..., EventStore]
STREAM = uid(1)


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def contents(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with the SHA-256 of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def assert_nothing_deleted(before: dict[str, str], root: Path) -> None:
    """The bytes of every data file (segments, write-ahead files, staged writes) that was there are
    still under ``root``, in place or in the quarantine folder. (Metadata such as the recorded head and
    the index is rewritten by design; the Delta log only grows.)"""
    kept = set(contents(root).values())
    data = ("log/segments/", "log/wal/", "log/.staging/")
    lost = [path for path, digest in before.items() if path.startswith(data) and digest not in kept]
    assert not lost, f"files deleted: {lost}"


def the_wal(store: EventStore) -> Path:
    (path,) = list(store.wal_dir.iterdir())
    return path


def small_commits(store: EventStore, make_event: MakeEvent, sizes: list[int]) -> list[list[int]]:
    return [store.append([make_event(STREAM) for _ in range(n)]) for n in sizes]


def record_offsets(path: Path) -> list[int]:
    """Start offsets of the records of a sound write-ahead file."""
    blob = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(blob):
        offsets.append(offset)
        nxt = blob.find(wal.MAGIC, offset + wal.HEADER_SIZE)
        offset = nxt if nxt >= 0 else len(blob)
    return offsets


def assert_refused(store: EventStore, make_event: MakeEvent, expected: str) -> None:
    """Reads and appends on the damaged log fail loudly, naming the damage."""
    with pytest.raises(CorruptionError, match=expected):
        store.read().collect()
    with pytest.raises(CorruptionError, match=expected):
        store.get_events(STREAM, "Thing")
    with pytest.raises(CorruptionError, match=expected):
        store.append([make_event(STREAM)])


def test_a_byte_flipped_mid_tail_loses_only_its_record_and_no_position_is_reused(
    open_store: OpenStore, make_event: MakeEvent, data_dir: Path
) -> None:
    writer = open_store()
    small_commits(writer, make_event, [1, 2, 1, 3])  # positions 1 | 2-3 | 4 | 5-7
    path = the_wal(writer)
    offsets = record_offsets(path)
    assert len(offsets) == 4
    blob = bytearray(path.read_bytes())
    blob[offsets[1] + wal.HEADER_SIZE + 40] ^= 0x01  # inside the second record's payload
    path.write_bytes(bytes(blob))
    before = contents(data_dir)

    reader = open_store(read_only=True)
    report = maintenance.verify(reader)
    assert not report.ok
    assert any(path.name in p and "positions 2..3 lost" in p for p in report.problems), report.problems
    assert contents(data_dir) == before, "verify changes nothing"

    reopened = open_store()  # a writer's open leaves a damaged log as it found it
    assert contents(data_dir) == before
    assert_refused(reopened, make_event, "positions 2..3 lost")

    repaired = maintenance.repair(reopened)
    assert repaired.lost == [(2, 3)]
    assert not repaired.ok and "2..3" in repaired.unresolved[0]
    assert_nothing_deleted(before, data_dir)
    events = reopened.read().collect()
    assert events["global_position"].to_list() == [1, 4, 5, 6, 7], "every intact record is kept"
    assert reopened.append([make_event(STREAM)]) == [8], "lost positions are never handed out again"
    assert [e.aggregate_version for e in reopened.get_events(STREAM, "Thing")] == [1, 4, 5, 6, 7, 8]
    after = maintenance.verify(open_store(read_only=True))
    assert after.ok and after.lost == [(2, 3)], after.problems


@pytest.mark.parametrize("cut", ["mid record", "whole record", "deleted"])
def test_a_truncated_or_deleted_tail_is_detected_not_accepted(
    open_store: OpenStore, make_event: MakeEvent, data_dir: Path, cut: str
) -> None:
    writer = open_store()
    small_commits(writer, make_event, [2, 1, 2])  # 1-2 | 3 | 4-5
    path = the_wal(writer)
    offsets = record_offsets(path)
    if cut == "deleted":
        path.unlink()
        lost, message = (1, 5), "is missing"
    else:
        size = offsets[2] + (10 if cut == "mid record" else 0)
        with open(path, "rb+") as handle:
            handle.truncate(size)
        lost, message = (4, 5), "4..5"
    before = contents(data_dir)

    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok and any(message in p for p in report.problems), report.problems
    assert any(f"{lost[0]}..{lost[1]}" in p for p in report.problems), report.problems
    reopened = open_store()
    assert contents(data_dir) == before, "opening changes nothing on a damaged log"
    assert_refused(reopened, make_event, f"{lost[0]}..{lost[1]}")

    repaired = maintenance.repair(reopened)
    assert repaired.lost == [lost]
    assert_nothing_deleted(before, data_dir)
    kept = [p for p in range(1, 6) if not lost[0] <= p <= lost[1]]
    assert reopened.read().collect()["global_position"].to_list() == kept
    assert reopened.append([make_event(STREAM)]) == [6]
    assert open_store().append([make_event(STREAM)]) == [7]
    assert maintenance.verify(open_store(read_only=True)).ok


def test_an_older_commit_point_put_back_deletes_nothing_and_repair_restores_the_log(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, data_dir: Path, tmp_path: Path
) -> None:
    writer = open_store()
    writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    transaction_log = writer.segments_dir / "_delta_log"
    backup = sorted(p.name for p in transaction_log.iterdir())
    writer.append([make_event(STREAM)])
    writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    writer.append([make_event(STREAM)])
    head = 2 * BULK_ROWS + 2
    expected = writer.read().collect()
    assert expected.height == head
    # an operator restores an old backup of the commit point: the newer Delta commit files are gone
    newer = [p for p in transaction_log.iterdir() if p.name not in backup]
    assert newer, "the second bulk batch made a Delta commit"
    for path in newer:
        shutil.move(path, tmp_path / path.name)
    before = contents(data_dir)

    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok
    assert any("older than the log" in p for p in report.problems), report.problems
    reopened = open_store()
    assert contents(data_dir) == before, "no newer segment is deleted or moved on open"
    with pytest.raises(CorruptionError, match=f"{BULK_ROWS + 1}..{head}"):
        reopened.read()
    with pytest.raises(CorruptionError):
        reopened.append([make_event(STREAM)])

    repaired = maintenance.repair(reopened)
    assert repaired.ok, repaired.unresolved
    assert any("rebuilt the commit point" in a for a in repaired.actions)
    assert_nothing_deleted(before, data_dir)
    assert reopened.read().collect().equals(expected)
    assert reopened.append([make_event(STREAM)]) == [head + 1]
    assert maintenance.verify(open_store(read_only=True)).ok


def test_a_stray_file_is_reported_then_moved_to_quarantine_never_deleted(
    open_store: OpenStore, make_event: MakeEvent, make_frame: MakeFrame, data_dir: Path
) -> None:
    writer = open_store()
    writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    writer.append([make_event(STREAM)])
    segment = next(writer.segments_dir.rglob("*.parquet"))
    strays = [
        segment.with_name("seg-000000009000-000000009001-" + "0" * 32 + ".parquet"),
        segment.parent / "notes.txt",
        writer.wal_dir / wal.wal_name(77),
        writer.staging_dir / "half-written.parquet",
    ]
    for stray in strays:
        stray.write_bytes(b"not part of the log " + stray.name.encode())
    before = contents(data_dir)

    report = maintenance.verify(open_store(read_only=True))
    assert contents(data_dir) == before
    for stray in strays:
        assert any(stray.name in p and "not part of the log" in p for p in report.problems), stray

    reopened = open_store()
    assert not any(stray.exists() for stray in strays)
    assert_nothing_deleted(before, data_dir)
    quarantined = {p.name for p in (writer.root / "quarantine").rglob("*") if p.is_file()}
    assert {s.name for s in strays} <= quarantined
    assert reopened.read().collect().height == BULK_ROWS + 1
    assert maintenance.verify(open_store(read_only=True)).ok


def test_a_bit_flipped_in_a_segment_fails_every_read_naming_the_file(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path
) -> None:
    writer = open_store()
    writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    segment = next(writer.segments_dir.rglob("*.parquet"))
    blob = bytearray(segment.read_bytes())
    blob[len(blob) // 3] ^= 0x04
    segment.write_bytes(bytes(blob))
    before = contents(data_dir)

    fresh = open_store(read_only=True)  # a new process-level reader would see the same
    report = maintenance.verify(fresh)
    assert not report.ok and any(segment.name in p and "checksum" in p for p in report.problems)
    for read in (
        lambda s: s.read().collect(),
        lambda s: s.get_events(STREAM, "Thing"),
        lambda s: s.read_fields({"n": pl.Int64}),
    ):
        with pytest.raises(CorruptionError, match=segment.name):
            read(open_store(read_only=True))
    repaired = maintenance.repair(open_store())
    assert not repaired.ok and segment.name in repaired.unresolved[0]
    assert contents(data_dir) == before


def test_an_older_delta_log_restored_past_a_checkpoint_is_detected_and_repaired(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path, tmp_path: Path
) -> None:
    writer = open_store()
    transaction_log = writer.segments_dir / "_delta_log"
    for k in range(14):  # past the Delta checkpoint written every 10 commits
        writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
        if k == 6:
            shutil.copytree(transaction_log, tmp_path / "backup")  # an operator's backup, before it
    assert (transaction_log / "_last_checkpoint").exists()
    head = 14 * BULK_ROWS
    expected = writer.read().collect()
    # the backup of the transaction log is put back: newer commit files, checkpoint and its pointer gone
    shutil.move(transaction_log, tmp_path / "newer")
    shutil.copytree(tmp_path / "backup", transaction_log)
    before = contents(data_dir)

    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok
    assert any(f"{7 * BULK_ROWS + 1}..{head}" in p and "older than the log" in p for p in report.problems)
    reopened = open_store()
    assert contents(data_dir) == before, "nothing is moved or written on open"
    with pytest.raises(CorruptionError, match=f"{7 * BULK_ROWS + 1}..{head}"):
        reopened.read()

    repaired = maintenance.repair(reopened)
    assert repaired.ok, repaired.unresolved
    assert_nothing_deleted(before, data_dir)
    assert reopened.read().collect().equals(expected)
    table_rows = pl.scan_delta(reopened.table_uri).select("global_position").collect()
    assert table_rows["global_position"].sort().to_list() == list(range(1, head + 1))
    assert maintenance.verify(open_store(read_only=True)).ok


def test_a_commit_file_missing_from_the_middle_of_the_delta_log_is_reported(
    open_store: OpenStore, make_frame: MakeFrame, tmp_path: Path
) -> None:
    writer = open_store()
    for _ in range(3):
        writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    middle = writer.segments_dir / "_delta_log" / f"{2:020d}.json"
    shutil.move(middle, tmp_path / middle.name)
    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok
    assert any("_delta_log" in p and "cannot be replayed" in p for p in report.problems), report.problems
    with pytest.raises(CorruptionError, match="cannot be replayed"):
        writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    expected = writer.read().collect()
    assert expected.height == 3 * BULK_ROWS, "the refused commit added nothing"
    assert maintenance.reindex(writer).rebuilt_manifest
    # rebuilt from every segment file: the refused batch's, written before its commit failed, is all
    # in (as after a crash in the middle of a commit) and nothing else changed
    rebuilt = writer.read().collect()
    assert rebuilt.head(expected.height).equals(expected)
    assert rebuilt["global_position"].to_list() == list(range(1, rebuilt.height + 1))
    assert rebuilt.height in (3 * BULK_ROWS, 4 * BULK_ROWS)
    assert list((writer.root / "quarantine").rglob(f"_delta_log/{middle.name.replace('2', '1', 1)}"))
    assert maintenance.verify(open_store(read_only=True)).ok


def test_repair_rebuilds_a_delta_log_missing_a_middle_commit_file_keeping_every_event_and_the_tail(
    open_store: OpenStore, make_frame: MakeFrame, make_event: MakeEvent, data_dir: Path, tmp_path: Path
) -> None:
    writer = open_store()
    for _ in range(3):
        writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    small_commits(writer, make_event, [2, 3])  # a write-ahead tail past the segments
    expected = writer.read().collect()
    middle = writer.segments_dir / "_delta_log" / f"{2:020d}.json"
    shutil.move(middle, tmp_path / middle.name)
    before = contents(data_dir)
    problems = maintenance.verify(open_store(read_only=True)).problems
    assert any("cannot be replayed" in p and "settler log repair" in p for p in problems), problems

    repaired = maintenance.repair(open_store())
    assert repaired.ok and not repaired.lost, repaired
    assert any("rebuilt the Delta transaction log" in action for action in repaired.actions)
    assert_nothing_deleted(before, data_dir)
    reopened = open_store()
    assert reopened.read().collect().equals(expected)
    assert reopened.wal_dir.exists() and expected.height == 3 * BULK_ROWS + 5
    assert maintenance.verify(open_store(read_only=True)).ok
    assert not maintenance.repair(open_store()).actions, "a second repair finds nothing to do"


def test_a_directory_named_like_the_next_commit_is_named_by_every_open_and_removing_it_heals(
    open_store: OpenStore, make_frame: MakeFrame, data_dir: Path
) -> None:
    # A directory where the next commit file belongs (made by hand or by a tool) used to fail every
    # command with an internal IsADirectoryError naming nothing.
    writer = open_store()
    writer.append_frame(make_frame(BULK_ROWS, streams=[STREAM], aggregate_type="Thing"))
    version = writer.segments_dir / "_delta_log" / f"{2:020d}.json"
    assert not version.exists() and version.with_name(f"{1:020d}.json").is_file()
    version.mkdir()
    for opened in (lambda: open_store(read_only=True), open_store):
        with pytest.raises(CorruptionError, match="is a directory where the table's newest commit"):
            opened()
    version.rmdir()
    assert open_store().read().collect().height == BULK_ROWS
    assert maintenance.verify(open_store(read_only=True)).ok
