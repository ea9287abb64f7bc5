"""Aggregate snapshots built in bulk: snapshot + tail equals full replay; old-schema snapshots are ignored."""

from __future__ import annotations

import json
import random
from pathlib import Path
from unittest.mock import patch

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.projections import build_snapshots, streams_needing_snapshots
from settler_pipeline.store import rollups
from settler_pipeline.store.event_store import EventStore
from tests.unit.test_projections_fold import random_log

APPEND_COLUMNS = (
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "data",
    "tenant_id",
    "correlation_id",
    "timestamp",
)


def full_replay(store: EventStore, run: str) -> agg.ReconciliationState:
    return agg.fold(agg.ReconciliationState(), store.get_events(run, e.AGGREGATE_TYPE))


def from_snapshot(store: EventStore, run: str) -> tuple[agg.ReconciliationState, int]:
    snapshot = store.get_latest_snapshot(run, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION)
    assert snapshot is not None
    state = agg.ReconciliationState.from_dict(snapshot.state)
    tail = store.stream_frame(run, e.AGGREGATE_TYPE, from_version=snapshot.aggregate_version + 1)
    return agg.fold_frame(state, tail), snapshot.aggregate_version


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32),
    every=st.integers(1, 12),
    cuts=st.lists(st.integers(1, 200), min_size=1, max_size=4),
    chunk=st.integers(5, 500),
    rolled=st.booleans(),
)
def test_snapshot_plus_tail_equals_full_replay_for_every_run(
    tmp_path_factory: object, seed: int, every: int, cuts: list[int], chunk: int, rolled: bool
) -> None:
    """With or without segment rollups (``rolled``: every segment with a match gets one)."""
    data_dir = Path(tmp_path_factory.mktemp("snapshots"))  # type: ignore[attr-defined]
    log = random_log(random.Random(seed), runs=4, max_events=200)
    share = 0.0 if rolled else 2.0
    with patch.object(rollups, "MIN_SHARE", share), EventStore.open(data_dir) as store:
        bounds = [*sorted({min(c, log.height) for c in cuts}), log.height]
        start = 0
        for bound in bounds:
            part = log.slice(start, bound - start)
            if part.height:
                store.append_frame(part.select(APPEND_COLUMNS))
            if bound % 2:
                store.publish()  # into a segment: its events typed, the others still JSON in the tail
            start = bound
            build_snapshots(store, every=every, chunk_events=chunk)
        versions = dict(log.group_by("aggregate_id").len().iter_rows())
        for run, version in versions.items():
            replayed = full_replay(store, run)
            if version < every:
                assert store.get_latest_snapshot(run, e.AGGREGATE_TYPE) is None
                continue
            state, snapshot_version = from_snapshot(store, run)
            assert state == replayed
            assert snapshot_version // every == version // every  # nothing crossed a multiple since
            prefix = store.stream_frame(run, e.AGGREGATE_TYPE).filter(
                pl.col("aggregate_version") <= snapshot_version
            )
            snapshot = store.get_latest_snapshot(run, e.AGGREGATE_TYPE)
            assert snapshot is not None
            assert agg.ReconciliationState.from_dict(snapshot.state) == agg.fold_frame(
                agg.ReconciliationState(), prefix
            )
        assert streams_needing_snapshots(store, every).height == 0


def test_a_snapshot_of_another_schema_version_is_ignored_and_rebuilt(store: EventStore) -> None:
    log = random_log(random.Random(8), runs=2, max_events=80)
    store.append_frame(log.select(APPEND_COLUMNS))
    run = log["aggregate_id"][0]
    version = log.filter(pl.col("aggregate_id") == run).height
    bogus = {"not": "the current shape"}
    store.save_snapshot(
        run,
        e.AGGREGATE_TYPE,
        version,
        bogus,
        schema_version=agg.SNAPSHOT_SCHEMA_VERSION + 1,
        global_position=1,
    )
    assert (
        store.get_latest_snapshot(run, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION) is None
    )
    assert build_snapshots(store, every=1) == 2
    snapshot = store.get_latest_snapshot(run, e.AGGREGATE_TYPE, schema_version=agg.SNAPSHOT_SCHEMA_VERSION)
    assert snapshot is not None and snapshot.aggregate_version == version
    assert agg.ReconciliationState.from_dict(snapshot.state) == full_replay(store, run)
    assert json.dumps(snapshot.state) != json.dumps(bogus)


def test_a_run_is_snapshotted_once_at_its_current_version_whatever_the_multiples_it_crossed(
    store: EventStore,
) -> None:
    log = random_log(random.Random(21), runs=1, max_events=60)
    store.append_frame(log.select(APPEND_COLUMNS))
    run, version = log["aggregate_id"][0], log.height
    assert build_snapshots(store, every=5) == 1
    assert build_snapshots(store, every=5) == 0  # nothing new: nothing to do
    snapshot = store.get_latest_snapshot(run, e.AGGREGATE_TYPE)
    assert snapshot is not None
    assert (snapshot.aggregate_version, snapshot.global_position) == (
        version,
        log["global_position"].max(),
    )
    assert store.snapshots.count() == 1
