"""Segment rollups (``store/rollups.py``): derived sums of a segment's matches that rebuilds read
instead of the matches themselves. Read models are the same with or without them, after compaction,
and a damaged, wrong or orphaned rollup is detected."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settler_pipeline import projections
from settler_pipeline.domain import events as e
from settler_pipeline.errors import CorruptionError
from settler_pipeline.store import maintenance, rollups
from settler_pipeline.store.event_store import EventStore
from tests.integration.test_read_models import APPEND_COLUMNS, append, in_memory
from tests.unit.test_projections_fold import random_log


@contextmanager
def rolled(share: float = 0.0) -> Iterator[None]:
    """Every segment written meanwhile gets a rollup when it holds any typed match (``share`` 0), or
    none (``share`` above 1)."""
    with patch.object(rollups, "MIN_SHARE", share):
        yield


def published_in_parts(store: EventStore, log: pl.DataFrame, sizes: list[int]) -> None:
    """Append ``log`` in parts of ``sizes`` (the rest last), each published into segments."""
    append(store, log, sizes, publish=True)


def assert_same_as_one_fold(data_dir: Path, log: pl.DataFrame) -> None:
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(log, name)), name


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32),
    appends=st.lists(st.integers(1, 120), min_size=1, max_size=4),
    dropped=st.sets(st.integers(0, 30), max_size=8),
    compact=st.booleans(),
    tail=st.integers(0, 40),
    chunk=st.integers(3, 300),
)
def test_updates_and_rebuilds_with_and_without_rollups_and_after_compaction_give_the_one_fold(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    appends: list[int],
    dropped: set[int],
    compact: bool,
    tail: int,
    chunk: int,
) -> None:
    """Some segments have rollups and some not (``dropped``), compaction rewrites the small ones (and
    rolls them up again), and the last events stay unpublished in the tail until the update."""
    data_dir = tmp_path_factory.mktemp("rollups")
    history = random_log(random.Random(seed), runs=8, max_events=250)
    cut = max(0, history.height - tail)
    with rolled(), EventStore.open(data_dir) as store:
        start = 0
        for size in appends:
            part = history.slice(start, min(size, cut - start))
            if part.height:
                published_in_parts(store, part, [])
                projections.update(store, chunk_events=chunk)
            start += part.height
        written = sorted(rollups.listing(store.rollups_dir).values())
        has_matches = history.slice(0, start)["event_type"].eq(e.RECORD_MATCHED).any()
        assert bool(written) == has_matches or not start
        for index in dropped:
            if index < len(written):
                written[index].unlink()
        if compact:
            maintenance.compact(store)
        published_in_parts(store, history.slice(start, cut - start), [37])
        if cut < history.height:
            store.append_frame(history.slice(cut).select(APPEND_COLUMNS))  # the tail: no rollup yet
        projections.update(store, chunk_events=chunk)
        assert_same_as_one_fold(data_dir, history)
        projections.rebuild(store, chunk_events=chunk)
        assert_same_as_one_fold(data_dir, history)
        assert maintenance.verify(store).ok


def test_a_rebuild_reads_rollups_instead_of_the_matches_and_gives_the_same_rows(
    store: EventStore, data_dir: Path
) -> None:
    log = random_log(random.Random(5), runs=12, max_events=400)
    with rolled():
        published_in_parts(store, log, [150, 150])
    assert rollups.listing(store.rollups_dir)
    sums, rows, rest = store.read_rolled(
        0, store.head_position, rolled_upto=store.head_position, version=None, payload_fields=("attempt",)
    )
    matched = log.filter(pl.col("event_type") == e.RECORD_MATCHED).height
    summed = sums.select(pl.col(rollups.ROWS).sum()).collect().item()
    assert 0 < summed == matched  # every match of the log is in a rollup's sums...
    others = pl.concat([rows.collect(), rest.collect()], how="diagonal_relaxed")
    assert others.height == log.height - matched  # ... and every other event is read as is
    assert others.filter(pl.col("event_type") == e.RECORD_MATCHED).is_empty()
    projections.rebuild(store)
    assert_same_as_one_fold(data_dir, log)


def test_a_rollup_is_what_its_segment_gives_and_verify_finds_a_wrong_or_damaged_one(
    store: EventStore,
) -> None:
    log = random_log(random.Random(9), runs=6, max_events=300)
    with rolled():
        published_in_parts(store, log, [100])
    segments = store.committed_view().manifest.segments
    found = rollups.listing(store.rollups_dir)
    assert found and maintenance.verify(store).ok
    seg = next(s for s in segments if Path(s.path).name.removesuffix(".parquet") in found)
    path = found[Path(seg.path).name.removesuffix(".parquet")]
    expected = rollups.build(pl.read_parquet(store.segments_dir / seg.path))
    assert expected is not None and pl.read_parquet(path).equals(expected)

    # a rollup with a valid checksum whose sums are not its segment's (one match less)
    wrong = expected.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.col(rollups.ROWS) - 1).otherwise(pl.col(rollups.ROWS))
    )
    path.unlink()
    with patch.object(rollups, "build", lambda frame, share: wrong):
        rollups.write(seg.path, expected, store.rollups_dir, store.staging_dir)
    report = maintenance.verify(store)
    assert not report.ok and any("does not hold the sums and rows" in p for p in report.problems)

    # a flipped byte: the read fails naming the file, and verify says so
    path = rollups.listing(store.rollups_dir)[Path(seg.path).name.removesuffix(".parquet")]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with (
        EventStore.open(store.data_dir, read_only=True) as fresh,
        pytest.raises(CorruptionError, match="rollup"),
    ):
        fresh.read_rolled(0, fresh.head_position, rolled_upto=fresh.head_position, version=None)
    assert any("damaged" in p for p in maintenance.verify(store).problems)

    # deleting it is the fix: the segment is read instead
    path.unlink()
    assert maintenance.verify(store).ok
    projections.rebuild(store)
    assert_same_as_one_fold(store.data_dir, log)


def test_a_rollups_other_rows_keep_their_typed_columns_and_rollups_without_them_still_serve(
    store: EventStore, data_dir: Path
) -> None:
    """A rebuild reads the proposals and records of a rollup's other rows from their typed columns;
    rollups written before they kept those columns (other rows untyped, payload in ``data``) give the
    same rows, decoded from the JSON, and pass verify."""
    log = random_log(random.Random(11), runs=10, max_events=300)
    with rolled():
        published_in_parts(store, log, [120])
    found = rollups.listing(store.rollups_dir)
    assert found
    other = pl.concat(
        [pl.read_parquet(path).filter(pl.col(rollups.ROWS).is_null()) for path in found.values()],
        how="diagonal_relaxed",
    )
    records = other.filter(pl.col("event_type") == e.RECORD_UNMATCHED)
    assert records.height and records["payload_typed"].all() and records["record_id"].null_count() == 0
    assert not other.filter(pl.col("event_type") == e.RECONCILIATION_STARTED)["payload_typed"].any()
    assert other["data"].null_count() == 0  # the documents stay, for readers that want them
    projections.rebuild(store)
    assert_same_as_one_fold(data_dir, log)

    old_build = rollups.build
    for path in found.values():
        path.unlink()
    with rolled(), patch.object(rollups, "build", lambda frame, share: old_build(frame, share, typed=False)):
        for seg in store.committed_view().manifest.segments:
            if Path(seg.path).name.removesuffix(".parquet") in found:
                rows = pl.read_parquet(store.segments_dir / seg.path)
                rollups.write(seg.path, rows, store.rollups_dir, store.staging_dir)
    untyped = rollups.listing(store.rollups_dir)
    assert untyped.keys() == found.keys()
    for path in untyped.values():
        rows = pl.read_parquet(path).filter(pl.col(rollups.ROWS).is_null())
        assert not rows["payload_typed"].any() and "record_id" not in rows.columns
    assert maintenance.verify(store).ok
    projections.rebuild(store)
    assert_same_as_one_fold(data_dir, log)


def test_rollups_of_another_version_are_not_used_and_compaction_moves_the_retired_ones_aside(
    store: EventStore,
) -> None:
    log = random_log(random.Random(3), runs=8, max_events=300)
    with rolled():
        published_in_parts(store, log, [40, 40, 40])
        head = store.head_position
        _, rows, rest = store.read_rolled(0, head, rolled_upto=head, version=2)
        assert rows.collect().height == log.height  # no rollup sums version 2 matches
        assert rest.collect().is_empty()
        _, rows, rest = store.read_rolled(0, head, rolled_upto=head // 2, version=1)
        assert 0 < rows.collect().height < log.height and rest.collect().height
        before = set(rollups.listing(store.rollups_dir))
        report = maintenance.compact(store)
    assert report.retired
    after = set(rollups.listing(store.rollups_dir))
    live = {Path(s.path).name.removesuffix(".parquet") for s in store.committed_view().manifest.segments}
    assert after <= live and after - before  # the compacted segments have their own
    retired = {Path(p).name.removesuffix(".parquet") for p in report.retired}
    assert not retired & after
    assert {
        p.name.split(".r-")[0] for p in (store.retired_dir / rollups.FOLDER).iterdir()
    } == retired & before


def test_compaction_rolls_up_segments_written_without_a_rollup_and_reads_only_mostly_matched_ones(
    store: EventStore, data_dir: Path
) -> None:
    """A log written before rollups existed (or whose writer crashed between a segment and its rollup)
    gets them from the next compaction, which reads only the segments the index says are mostly
    matches; a second compaction has nothing left to do."""
    log = random_log(random.Random(11), runs=10, max_events=300)
    with rolled(2.0):  # no segment gets a rollup
        published_in_parts(store, log, [120, 120, 120])
    assert not rollups.listing(store.rollups_dir)
    segments = store.committed_view().manifest.segments
    shares = {
        s.path: log.slice(s.first_position - 1, s.rows)["event_type"].eq(e.RECORD_MATCHED).mean()
        for s in segments
    }
    reads: list[str] = []
    original = maintenance.read_verified

    def counted(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
        reads.append(path.name)
        return original(path, columns)

    with patch.object(maintenance, "read_verified", counted):
        report = maintenance.compact(store, target_rows=1)  # nothing to merge at one row a segment
    qualifying = {Path(p).name for p, share in shares.items() if share >= rollups.MIN_SHARE}
    assert qualifying and len(qualifying) < len(segments)  # the log has both kinds
    assert set(reads) == qualifying
    assert report.rollups_written == len(qualifying)
    assert {Path(p).name.removesuffix(".parquet") for p in qualifying} == set(
        rollups.listing(store.rollups_dir)
    )
    assert maintenance.verify(store).ok
    assert maintenance.compact(store, target_rows=1).rollups_written == 0
    sums, _, _ = store.read_rolled(0, store.head_position, rolled_upto=store.head_position, version=None)
    assert sums.select(pl.col(rollups.ROWS).sum()).collect().item() > 0
    projections.rebuild(store)
    assert_same_as_one_fold(data_dir, log)


def test_an_orphaned_rollup_is_reported_and_moved_to_quarantine_by_the_next_writer(
    store: EventStore, data_dir: Path
) -> None:
    log = random_log(random.Random(4), runs=4, max_events=120)
    with rolled():
        published_in_parts(store, log, [])
    stray = next(iter(rollups.listing(store.rollups_dir).values()))
    orphan = stray.with_name("seg-000000999999-000001000000-" + "0" * 32 + ".r-" + "1" * 32 + ".parquet")
    orphan.write_bytes(stray.read_bytes())
    assert any(orphan.name in p for p in maintenance.verify(store).problems)
    store.close()
    with EventStore.open(data_dir):
        pass
    assert not orphan.exists()
    assert list((data_dir / "log").rglob(orphan.name))  # moved, never deleted
