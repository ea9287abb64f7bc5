"""A power loss in the middle of a Delta commit: the commit file's name reached the disk, its bytes did
not. Such a commit was never acknowledged (a commit is acknowledged only once its file is synced), so
the next writer's open sets it aside and the log carries on from the version before, losing nothing
that was acknowledged. A damaged commit that *was* acknowledged is never mistaken for one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline.errors import CorruptionError
from settler_pipeline.store import maintenance
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import EventStore
from tests.factories import MakeEvent, uid
from tests.integration.test_log_damage import contents

OpenStore = Callable[..., EventStore]
STREAM = uid(7)


class PowerLoss(Exception):
    """Stands for the machine stopping right after the commit file was renamed into place."""


def _power_loss(segments_dir: Path, version: int) -> None:
    raise PowerLoss(f"version {version} of {segments_dir} was not synced")


def newest_commit(store: EventStore) -> Path:
    version = delta_table.newest_version(store.segments_dir)
    assert version is not None
    return delta_table.commit_file(store.segments_dir, version)


def publish_interrupted_by_power_loss(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Publish the tail and stop the machine before the commit file's bytes are synced; returns the
    commit file, whose content the caller then takes away as the disk would."""
    with monkeypatch.context() as patch:
        patch.setattr(delta_table, "_sync_commit", _power_loss)
        with pytest.raises(PowerLoss):
            store.publish()
    return newest_commit(store)


def cut_inside_the_state(store: EventStore) -> Path:
    """Cut the newest commit file inside the line that carries the log's state; returns the file."""
    commit = newest_commit(store)
    blob = commit.read_bytes()
    commit.write_bytes(blob[: blob.index(b'{"commitInfo"') + 40])
    return commit


def positions(store: EventStore) -> list[int]:
    return sorted(store.read().collect()["global_position"].to_list())


def table_positions(store: EventStore) -> list[int]:
    frame = pl.scan_delta(store.table_uri).select("global_position").collect()
    return sorted(frame["global_position"].to_list())


@pytest.mark.parametrize("torn", ["empty", "zero-filled", "cut short"])
def test_an_unsynced_newest_commit_is_set_aside_and_no_acknowledged_event_is_lost(
    open_store: OpenStore, make_event: MakeEvent, data_dir: Path, monkeypatch: pytest.MonkeyPatch, torn: str
) -> None:
    writer = open_store()
    writer.append([make_event(STREAM) for _ in range(3)])
    writer.publish()  # version n: positions 1..3 in the table
    published = newest_commit(writer)
    acknowledged = [writer.append([make_event(STREAM)])[0] for _ in range(4)]  # 4..7, in the tail
    assert acknowledged == [4, 5, 6, 7]
    commit = publish_interrupted_by_power_loss(writer, monkeypatch)
    assert commit != published
    blob = commit.read_bytes()
    damaged = {"empty": b"", "zero-filled": b"\0" * len(blob), "cut short": blob[: len(blob) // 2]}[torn]
    commit.write_bytes(damaged)

    report = maintenance.verify(open_store(read_only=True))
    named = [p for p in report.problems if commit.name in p and "interrupted" in p]
    assert not report.ok and named, report.problems

    reopened = open_store()
    assert not commit.exists(), "the torn commit is no longer the table's newest version"
    kept = list((data_dir / "log" / "quarantine").rglob(f"_delta_log/{commit.name}"))
    assert [p.read_bytes() for p in kept] == [damaged], "set aside, not deleted"
    assert positions(reopened) == [1, 2, 3, 4, 5, 6, 7]
    assert reopened.append([make_event(STREAM)]) == [8]
    reopened.publish()
    assert table_positions(reopened) == list(range(1, 9))
    assert maintenance.verify(open_store(read_only=True)).ok


def test_a_damaged_acknowledged_newest_commit_is_left_as_found(
    open_store: OpenStore, make_event: MakeEvent, data_dir: Path
) -> None:
    """The same bytes cut short after a publish that returned: its events are no longer in the
    write-ahead file, so setting the commit aside would lose them; the open leaves everything as it was
    and reads fail naming the damage."""
    writer = open_store()
    writer.append([make_event(STREAM) for _ in range(3)])
    writer.publish()
    writer.append([make_event(STREAM) for _ in range(4)])
    writer.publish()  # acknowledged: positions 4..7 live only in the newest commit's segment
    commit = cut_inside_the_state(writer)
    before = contents(data_dir)

    with pytest.raises(CorruptionError, match="cut short"):
        open_store()
    assert contents(data_dir) == before, "nothing moved, nothing written"
    report = maintenance.verify(open_store(read_only=True))
    assert not report.ok and any(commit.name in p for p in report.problems), report.problems

    rebuilt = maintenance.reindex(open_store(recover_index=False))  # what the error's hint says
    assert rebuilt.rebuilt_manifest
    assert positions(open_store()) == [1, 2, 3, 4, 5, 6, 7]
    assert maintenance.verify(open_store(read_only=True)).ok


def test_a_compaction_commit_cut_short_goes_back_to_the_version_before_losing_nothing(
    open_store: OpenStore, make_event: MakeEvent, data_dir: Path
) -> None:
    """A compaction keeps the head and leaves the files it replaced in place (until a vacuum, whose
    commits would come after it): the version before still names files holding every event, so its
    commit cut short is set aside, the merged segment with it, and nothing is lost or deleted."""
    writer = open_store()
    for _ in range(3):
        writer.append([make_event(STREAM) for _ in range(2)])
        writer.publish()
    compacted = maintenance.compact(writer, target_rows=1_000)
    assert compacted.segments_after < compacted.segments_before
    commit = cut_inside_the_state(writer)
    before = contents(data_dir)

    reopened = open_store()
    assert positions(reopened) == [1, 2, 3, 4, 5, 6]
    assert reopened.append([make_event(STREAM)]) == [7]
    after = contents(data_dir)
    moved = {Path(p).name for p in before.keys() - after.keys()}
    assert commit.name in moved and any(name.startswith("seg-") for name in moved)
    assert {Path(p).name for p in after if "quarantine" in p} >= moved, "moved aside, not deleted"
    assert maintenance.verify(open_store(read_only=True)).ok
