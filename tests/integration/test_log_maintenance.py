"""Log maintenance: compact and reindex change no answer, verify finds damage and changes nothing."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from settler_pipeline.errors import StoreError
from settler_pipeline.store import maintenance
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from settler_pipeline.store.table import TOMBSTONE_RETENTION, table_uri
from tests.factories import MakeEvent, MakeFrame, build_event, build_frame, bulk_batches_to_segments, uid, utc

OpenStore = Callable[..., EventStore]
STREAMS = [uid(k) for k in range(1, 4)]
FLOWS = [uid(k, kind=0xC) for k in range(1, 3)]
ROOT_EVENT = uid(1, kind=0xE)


@pytest.fixture(autouse=True, scope="module")
def _bulk_batches_to_segments() -> Iterator[None]:
    with bulk_batches_to_segments():
        yield


def _populate(store: EventStore, make_event: MakeEvent, make_frame: MakeFrame) -> None:
    """Small commits and bulk batches over three event dates, so each date has several segments, plus
    a write-ahead tail; with a causation chain and two flows."""
    days = [utc(2026, 10, 30, 12), utc(2026, 10, 31, 12), utc(2026, 11, 1, 12)]
    root = make_event(STREAMS[0], event_id=ROOT_EVENT, correlation_id=FLOWS[0], timestamp=days[0])
    store.append(
        [root, make_event(STREAMS[1], correlation_id=FLOWS[0], causation_id=root.id, timestamp=days[0])]
    )
    for k in range(3):
        n = BULK_ROWS + 100 * k
        store.append_frame(
            make_frame(
                n,
                streams=STREAMS,
                aggregate_type="Thing",
                correlation_id=FLOWS[k % 2],
                timestamps=[days[(k + j) % 3] for j in range(n)],
            )
        )
        store.append(
            [
                make_event(STREAMS[k], correlation_id=FLOWS[1], causation_id=root.id, timestamp=days[k]),
                make_event(STREAMS[2], correlation_id=FLOWS[0], timestamp=days[2]),
            ]
        )
        time.sleep(0.002)
    assert len(list(store.segments_dir.rglob("*.parquet"))) >= 6
    assert any(store.wal_dir.iterdir())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The populated log, built once per module; each test gets a copy."""
    data_dir = tmp_path_factory.mktemp("template") / "data"
    with EventStore.open(data_dir) as store:
        _populate(store, build_event, build_frame)
    return data_dir


@pytest.fixture
def populated(template: Path, data_dir: Path, open_store: OpenStore) -> EventStore:
    """A copy of the populated log (see :func:`_populate`), open."""
    shutil.copytree(template, data_dir)
    return open_store()


def answers(store: EventStore) -> dict[str, Any]:
    """A fixed set of queries whose answers no maintenance step may change."""
    events = store.read().collect()
    middle = events["created_at"][events.height // 2]
    return {
        "head": store.head_position,
        "read": events,
        "streams": [store.get_events(s, "Thing") for s in STREAMS],
        "ranges": store.get_events(STREAMS[1], "Thing", from_version=10, to_version=20),
        "flows": [store.get_events_by_correlation_id(f) for f in FLOWS],
        "chain": store.get_causation_chain(ROOT_EVENT),
        "position_at": [store.position_at(middle), store.position_at(middle - timedelta(days=3650))],
        "as_of": store.get_events(STREAMS[0], "Thing", as_of=middle),
        "types": store.read(event_types=["ThingHappened"]).collect(),
        "stats_events": maintenance.stats(store)["events_by_type"],
    }


def assert_same_answers(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key, value in before.items():
        if isinstance(value, pl.DataFrame):
            assert after[key].equals(value), key
        else:
            assert after[key] == value, key


def file_states(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_compact_verify_reindex_verify_keeps_every_answer(
    populated: EventStore, open_store: OpenStore
) -> None:
    store = populated
    before = answers(store)
    assert before["chain"] and all(before["flows"]) and before["ranges"]
    assert before["position_at"][0] > 0
    segments_before = len(list(store.segments_dir.rglob("*.parquet")))

    compacted = maintenance.compact(store, target_rows=1_000_000)
    assert compacted.segments_after < segments_before
    assert compacted.retired and all((store.segments_dir / p).exists() for p in compacted.retired)
    assert not any(store.wal_dir.iterdir()), "compaction moves the write-ahead tail into segments"
    assert sorted(Path(s.path).parent.name for s in store.committed_view().manifest.segments) == [
        "event_date=2026-10-30",
        "event_date=2026-10-31",
        "event_date=2026-11-01",
    ]
    report = maintenance.verify(store)
    assert report.ok, report.problems
    assert (report.head_position, report.events, report.segments) == (before["head"], before["head"], 3)
    assert_same_answers(before, answers(store))
    assert_same_answers(before, answers(open_store()))

    rebuilt = maintenance.reindex(store)
    assert (rebuilt.segments, rebuilt.events, rebuilt.rebuilt_manifest) == (3, before["head"], False)
    assert maintenance.verify(store).ok
    assert_same_answers(before, answers(store))
    assert_same_answers(before, answers(open_store()))

    again = maintenance.compact(store)
    assert again.retired == [] and again.events_rewritten == 0


def test_compaction_respects_the_target_size(populated: EventStore) -> None:
    before = answers(populated)
    report = maintenance.compact(populated, target_rows=BULK_ROWS)
    assert report.retired
    rows = [s.rows for s in populated._refresh().manifest.segments]
    assert max(rows) <= BULK_ROWS + 300  # a single segment may already exceed the target
    assert maintenance.verify(populated).ok
    assert_same_answers(before, answers(populated))


def test_a_reader_from_before_compaction_still_gets_correct_answers(
    populated: EventStore, open_store: OpenStore
) -> None:
    reader = open_store()
    expected = [reader.get_events(s, "Thing") for s in STREAMS]
    stale_manifest = reader._refresh().manifest
    frame = reader.read().collect()
    maintenance.compact(populated)
    assert reader._view is not None and reader._view.manifest is stale_manifest
    assert [reader.get_events(s, "Thing") for s in STREAMS] == expected
    assert reader.get_causation_chain(ROOT_EVENT) == populated.get_causation_chain(ROOT_EVENT)
    assert reader.read().collect().equals(frame)


def test_replaced_segments_stay_for_the_grace_period_and_a_later_compaction_vacuums_them(
    populated: EventStore, open_store: OpenStore
) -> None:
    retired = maintenance.compact(populated).retired
    files = [populated.segments_dir / p for p in retired]
    assert files and all(f.exists() for f in files), "left in place for earlier table versions"
    assert maintenance.verify(open_store(read_only=True)).ok, "replaced files are not strays"
    stray = files[0].with_name("seg-000000000001-000000000002-0000000000000000000000000000dead.parquet")
    shutil.copy2(files[0], stray)  # a file no version of the table names, beside the replaced ones
    problems = maintenance.verify(open_store(read_only=True)).problems
    assert len(problems) == 1 and stray.name in problems[0], problems
    open_store().close()
    assert not stray.exists() and all(f.exists() for f in files), "only the stray moves to quarantine"
    assert list(populated.root.glob(f"quarantine/*/**/{stray.name}"))
    maintenance.compact(open_store())
    assert all(f.exists() for f in files), "a recent file stays for readers of earlier versions"
    open_store().close()
    assert all(f.exists() for f in files), "opening a store deletes nothing"
    maintenance.compact(open_store(), grace_hours=0)  # as if the grace period had passed
    assert not any(f.exists() for f in files)
    assert maintenance.verify(open_store(read_only=True)).ok


def _age_removals(segments_dir: Path, days: int) -> int:
    """Rewrite every `remove` action of the table's commits as if it had been made ``days`` ago (what
    a compaction ``days`` ago left), then checkpoint: the checkpoint keeps only the removals younger
    than the table's ``delta.deletedFileRetentionDuration``. Returns how many it aged."""
    aged, then = 0, int((time.time() - days * 86400) * 1000)
    for commit in sorted((segments_dir / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines() if line]
        for action in actions:
            if "remove" in action:
                action["remove"]["deletionTimestamp"] = then
                aged += 1
        commit.write_text("".join(json.dumps(a) + "\n" for a in actions))
    for checkpoint in (segments_dir / "_delta_log").glob("*.checkpoint*"):
        checkpoint.unlink()  # written from the unaged removals; the new one is made from the commits
    (segments_dir / "_delta_log" / "_last_checkpoint").unlink(missing_ok=True)
    DeltaTable(table_uri(segments_dir)).create_checkpoint()
    return aged


@pytest.mark.parametrize("made_before_the_setting", [False, True])
def test_a_replaced_file_is_still_known_as_replaced_a_month_after_its_compaction(
    populated: EventStore, open_store: OpenStore, made_before_the_setting: bool
) -> None:
    # Delta forgets a `remove` a week old at its next checkpoint unless the table says otherwise; a
    # replaced file no compaction vacuumed since would then look like a stray: moved to quarantine,
    # reported by verify on a healthy log
    if made_before_the_setting:  # a table created before Settler set the retention: it gets it
        first = populated.segments_dir / "_delta_log" / f"{0:020d}.json"
        actions = [json.loads(line) for line in first.read_text().splitlines() if line]
        [metadata] = [a["metaData"] for a in actions if "metaData" in a]
        metadata["configuration"].pop("delta.deletedFileRetentionDuration", None)
        first.write_text("".join(json.dumps(a) + "\n" for a in actions))
        populated.close()
        populated = open_store()
    retired = maintenance.compact(populated).retired
    populated.close()
    files = [populated.segments_dir / p for p in retired]
    assert files and _age_removals(populated.segments_dir, days=30) >= len(files)
    report = maintenance.verify(open_store(read_only=True))
    assert report.ok, report.problems
    open_store().close()
    assert all(f.exists() for f in files) and not list(populated.root.glob("quarantine/**/*.parquet"))
    configuration = DeltaTable(table_uri(populated.segments_dir)).metadata().configuration
    assert configuration["delta.deletedFileRetentionDuration"] == TOMBSTONE_RETENTION
    maintenance.compact(open_store(), grace_hours=24)  # a month is past any grace period: vacuumed
    assert not any(f.exists() for f in files)
    assert maintenance.verify(open_store(read_only=True)).ok


@pytest.mark.parametrize("healthy", [True, False])
def test_verify_changes_nothing(populated: EventStore, tmp_path: Path, healthy: bool) -> None:
    store = populated
    if not healthy:
        segment = next(store.segments_dir.rglob("*.parquet"))
        blob = bytearray(segment.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        segment.write_bytes(bytes(blob))
    before = file_states(store.data_dir)
    time.sleep(0.01)
    report = maintenance.verify(store)
    assert report.ok is healthy
    assert file_states(store.data_dir) == before


# Where the flipped byte lands decides whether the file still parses (string data, page headers,
# the footer): verify must report each as a checksum problem, never crash on reading it.
@pytest.mark.parametrize("where", [0.2, 1 / 3, 0.5, 0.8, 0.99])
def test_verify_finds_a_corrupted_segment_in_a_copy_of_the_log(
    populated: EventStore, tmp_path: Path, where: float
) -> None:
    copy_dir = tmp_path / "copy"
    populated.copy_to(copy_dir)
    with EventStore.open(copy_dir) as copy:
        victim = sorted(copy.segments_dir.rglob("*.parquet"))[1]
        relative = victim.relative_to(copy.segments_dir).as_posix()
        blob = bytearray(victim.read_bytes())
        blob[int(len(blob) * where)] ^= 0x01
        victim.write_bytes(bytes(blob))
        report = maintenance.verify(copy)
    assert not report.ok
    assert any(relative in p and "checksum" in p for p in report.problems), report.problems
    assert maintenance.verify(populated).ok, "the original is untouched"


def test_verify_finds_a_missing_segment(populated: EventStore) -> None:
    victim = sorted(populated.segments_dir.rglob("*.parquet"))[0]
    victim.unlink()
    report = maintenance.verify(populated)
    relative = victim.relative_to(populated.segments_dir).as_posix()
    assert any(relative in p and "missing" in p for p in report.problems), report.problems


def test_verify_finds_a_stray_segment_file(populated: EventStore) -> None:
    source = sorted(populated.segments_dir.rglob("*.parquet"))[0]
    stray = source.with_name("seg-999999999990-999999999999-" + "0" * 32 + ".parquet")
    stray.write_bytes(source.read_bytes())
    report = maintenance.verify(populated)
    assert any(stray.name in p and "not part of the log" in p for p in report.problems), report.problems


def test_verify_finds_a_deleted_index_and_reindex_repairs_it(populated: EventStore) -> None:
    before = answers(populated)
    populated.remove_all_index_files()
    report = maintenance.verify(populated)
    assert not report.ok and any("index" in p and "missing" in p for p in report.problems), report.problems
    maintenance.reindex(populated)
    assert maintenance.verify(populated).ok
    assert_same_answers(before, answers(populated))


def test_verify_finds_an_index_that_disagrees_with_the_segments(populated: EventStore) -> None:
    before = answers(populated)
    con = duckdb.connect(str(populated.index.path))
    con.execute("DELETE FROM stream_granules WHERE row_group = 0")
    con.close()
    report = maintenance.verify(populated)
    assert any("stream_granules" in p for p in report.problems), report.problems
    maintenance.reindex(populated)
    assert maintenance.verify(populated).ok
    assert_same_answers(before, answers(populated))


def test_opening_a_log_whose_index_was_deleted_rebuilds_it(
    populated: EventStore, open_store: OpenStore
) -> None:
    before = answers(populated)
    populated.remove_all_index_files()
    reopened = open_store()
    assert maintenance.verify(reopened).ok
    assert_same_answers(before, answers(reopened))


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_reindex_rebuilds_a_lost_commit_point_from_the_segments(
    populated: EventStore, open_store: OpenStore, damage: str
) -> None:
    before = answers(populated)
    populated.close()
    transaction_log = populated.segments_dir / "_delta_log"
    if damage == "deleted":
        shutil.rmtree(transaction_log)
    else:
        newest = max(transaction_log.glob("*.json"))
        newest.write_text('{"commitInfo": {"settler.state": "{\\"generation\\": 3, \\"segm"}}')
    with pytest.raises(StoreError, match="reindex"):
        open_store()
    store = open_store(recover_index=False)
    report = maintenance.reindex(store)
    assert report.rebuilt_manifest and report.events == sum(
        s.rows for s in store._refresh().manifest.segments
    )
    store.close()
    repaired = open_store()
    assert maintenance.verify(repaired).ok
    assert_same_answers(before, answers(repaired))


def test_reindex_right_after_a_compaction_takes_the_merged_files_not_the_replaced_ones_too(
    populated: EventStore, open_store: OpenStore
) -> None:
    """The replaced files are still in place (for earlier table versions) when the commit point is
    lost: the rebuilt one names each event once."""
    before = answers(populated)
    replaced = maintenance.compact(populated).retired
    assert replaced and all((populated.segments_dir / p).exists() for p in replaced)
    populated.close()
    shutil.rmtree(populated.segments_dir / "_delta_log")
    store = open_store(recover_index=False)
    report = maintenance.reindex(store)
    assert report.rebuilt_manifest and report.events == before["head"]
    assert not {s.path for s in store.committed_view().manifest.segments} & set(replaced)
    store.close()
    assert maintenance.verify(open_store()).ok  # the writer's open moved the replaced files aside
    assert_same_answers(before, answers(open_store()))


def test_stats_describe_the_log(populated: EventStore) -> None:
    stats = maintenance.stats(populated)
    events = populated.read().collect()
    assert stats["head_position"] == stats["events"] == events.height
    assert stats["segments"] == len(list(populated.segments_dir.rglob("*.parquet")))
    assert stats["wal_events"] == populated._refresh().tail.rows > 0
    assert stats["events_by_type"] == dict(events.group_by("event_type").len().iter_rows())
    assert stats["streams_in_segments"] == len(STREAMS)
    maintenance.compact(populated)
    after = maintenance.stats(populated)
    assert after["wal_events"] == 0 and after["events_by_type"] == stats["events_by_type"]
