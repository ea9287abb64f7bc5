"""Read models on a real event log: publication, incremental updates, rebuilds, time travel, freshness and
the analyst database."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settler_pipeline import projections
from settler_pipeline.domain import events as e
from settler_pipeline.projections import analyst
from settler_pipeline.projections.checkpoint import META_KEY, Checkpoint, read_table, write_table
from settler_pipeline.store.event_store import EventStore
from tests.unit.test_projections_fold import TENANTS, batches, random_log

APPEND_COLUMNS = (
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "data",
    "tenant_id",
    "correlation_id",
    "timestamp",
)


def append(store: EventStore, log: pl.DataFrame, sizes: list[int], *, publish: bool = False) -> None:
    """Append ``log`` in consecutive batches of the given sizes (the rest in one batch), each
    published into segments when ``publish``."""
    start = 0
    for size in [*sizes, log.height]:
        part = log.slice(start, size)
        if part.height:
            store.append_frame(part.select(APPEND_COLUMNS))
            if publish:
                store.publish()
        start += part.height


def appended_in_steps(store: EventStore, log: pl.DataFrame, sizes: list[int]) -> Iterator[int]:
    """Append ``log`` in consecutive batches of the given sizes (the rest in one batch), yielding
    after each the number of events appended so far."""
    start = 0
    for size in [*sizes, log.height]:
        part = log.slice(start, size)
        if part.height:
            store.append_frame(part.select(APPEND_COLUMNS))
            start += part.height
            yield start


def in_memory(log: pl.DataFrame, name: str) -> pl.DataFrame:
    return projections.fold_batches(name, batches(log, []))


@pytest.fixture
def log() -> pl.DataFrame:
    history = random_log(random.Random(11), runs=24, max_events=400)
    assert history.height > 200
    return history


def test_an_update_publishes_every_read_model_with_its_checkpoint_and_no_lag(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log, [50, 3, 100])
    statuses = projections.update(store)
    assert {s["name"] for s in statuses} == set(projections.NAMES)
    assert all((s["checkpoint"], s["head"], s["lag"]) == (log.height, log.height, 0) for s in statuses)
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(log, name)), name
    root = data_dir / "read_models"
    assert (root / "tenant_usage_view.parquet").is_file()
    assert (root / "reconciliation_summary").is_symlink()  # one row per run: parts by run
    assert (root / "reconciliation_matches").is_symlink()
    assert list((root / "reconciliation_matches").glob("part-*.parquet"))
    assert (data_dir / "analytics.duckdb").is_file()


def test_updates_in_steps_give_the_same_tables_as_a_rebuild_and_an_idle_update_rewrites_nothing(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    first, second = log.head(170), log.slice(170)
    append(store, first, [60])
    projections.update(store, chunk_events=37)
    append(store, second, [1, 1, 40])
    projections.update(store, chunk_events=1000)
    stepped = {n: projections.read_model(data_dir, n) for n in projections.NAMES}
    root = data_dir / "read_models"
    stamps = {p.name: p.stat().st_mtime_ns for p in root.glob("*.parquet")}
    parted = ("reconciliation_summary", "reconciliation_exceptions", "reconciliation_matches")
    links = {n: os.readlink(root / n) for n in parted}
    projections.update(store)
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("*.parquet") if p.name in stamps} == {
        k: v for k, v in stamps.items() if k != "projection_status.parquet"
    } | {"projection_status.parquet": (root / "projection_status.parquet").stat().st_mtime_ns}
    assert {n: os.readlink(root / n) for n in links} == links
    projections.rebuild(store)
    for name in projections.NAMES:
        rebuilt = projections.read_model(data_dir, name)
        assert rebuilt.equals(stepped[name]), name
        assert rebuilt.equals(in_memory(log, name)), name


def test_as_of_a_position_or_a_commit_time_is_the_read_model_as_it_stood_then(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log.head(120), [])
    between = datetime.now(UTC)
    time.sleep(0.01)
    append(store, log.slice(120), [])
    for name in projections.NAMES:
        expected = in_memory(log.head(120), name)
        assert projections.as_of(store, name, position=120, chunk_events=7).equals(expected), name
    expected = in_memory(log.head(120), "reconciliation_exceptions")
    assert projections.as_of(store, "reconciliation_exceptions", at=between).equals(expected)
    tenant = TENANTS[0]
    mine = projections.as_of(store, "reconciliation_summary", tenant_id=tenant)
    everything = in_memory(log, "reconciliation_summary")
    assert mine.equals(everything.filter(pl.col("tenant_id") == tenant))


def test_status_reports_the_lag_of_each_read_model_behind_the_head(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log.head(100), [])
    assert all((s["checkpoint"], s["lag"]) == (0, 100) for s in projections.status(store))
    projections.update(store, names=["reconciliation_summary"])
    append(store, log.slice(100, 30), [])
    lags = {s["name"]: s["lag"] for s in projections.status(store)}
    assert lags["reconciliation_summary"] == 30 and lags["reconciliation_matches"] == 130
    projections.update(store)
    assert {s["lag"] for s in projections.status(store)} == {0}
    published = projections.sql(data_dir, "SELECT name, checkpoint, lag FROM projection_status ORDER BY name")
    assert published["checkpoint"].to_list() == [130] * 5 and published["lag"].to_list() == [0] * 5


def test_a_read_model_stored_by_another_version_of_its_definition_is_rebuilt(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log, [])
    projections.update(store)
    path = data_dir / "read_models" / "tenant_usage_view.parquet"
    stored = read_table(path)
    assert stored is not None
    write_table(path, stored[0].head(1), Checkpoint("tenant_usage_view", version=0, position=log.height))
    projections.update(store)
    assert projections.read_model(data_dir, "tenant_usage_view").equals(in_memory(log, "tenant_usage_view"))


def test_an_interrupted_update_leaves_the_published_tables_intact_and_is_cleaned_up(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log.head(150), [])
    projections.update(store)
    gens = data_dir / "read_models" / ".gens" / "reconciliation_matches"
    current = int(os.readlink(data_dir / "read_models" / "reconciliation_matches").rsplit("g", 1)[1])
    orphan = gens / f"g{current + 1:06d}"
    orphan.mkdir()
    (orphan / "part-junk.parquet").write_bytes(b"not parquet")
    (data_dir / "read_models" / ".tenant_usage_view.parquet.999.tmp").write_bytes(b"junk")
    assert projections.read_model(data_dir, "reconciliation_matches").equals(
        in_memory(log.head(150), "reconciliation_matches")
    )
    append(store, log.slice(150), [])
    projections.update(store)
    assert not (orphan / "part-junk.parquet").exists()
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(log, name)), name


_KILLED_BETWEEN_SWAPS = """
import os, signal, sys
from settler_pipeline import projections
from settler_pipeline.projections import checkpoint, runner
from settler_pipeline.store.event_store import EventStore

publish = checkpoint.publish_staged


def killed(root, staged):
    if len(staged) < 2:  # the events generation: published whole
        return publish(root, staged)
    checkpoint.fsync_all([path for one in staged for path in one.durable])
    staged[0].swap()
    os.kill(os.getpid(), signal.SIGKILL)  # between the first read model's swap and the next


runner.publish_staged = killed
with EventStore.open(sys.argv[1]) as store:
    projections.update(store)
"""


def test_an_update_killed_between_two_swaps_leaves_each_read_model_whole_and_the_next_converges(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    import signal
    import subprocess
    import sys

    append(store, log.head(150), [])
    projections.update(store)
    append(store, log.slice(150), [])
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BETWEEN_SWAPS, str(data_dir)], capture_output=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    swapped = []
    for name in projections.NAMES:  # each holds the rows of the update before or of this one, whole
        rows = projections.read_model(data_dir, name)
        assert rows.equals(in_memory(log.head(150), name)) or rows.equals(in_memory(log, name)), name
        swapped += [name] if not rows.equals(in_memory(log.head(150), name)) else []
    assert swapped == [projections.NAMES[0]], "the kill came after the first swap only"
    projections.update(store)
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(log, name)), name


def test_analysts_query_the_views_read_only_while_the_pipeline_updates(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log.head(100), [])
    projections.update(store)
    analyst = duckdb.connect(str(data_dir / "analytics.duckdb"), read_only=True)
    analyst.execute(f"SET file_search_path = '{data_dir}'")  # the views' paths are relative to it
    try:
        before = analyst.execute("SELECT count(*) FROM reconciliation_matches").fetchone()
        append(store, log.slice(100), [])
        projections.update(store)  # never blocked by the open read-only connection
        (data_dir / "read_models" / ".views.json").unlink()  # as if the views' definition changed
        projections.update(store)
        after = analyst.execute("SELECT count(*) FROM reconciliation_matches").fetchone()
        assert before is not None and after is not None
        assert after[0] == in_memory(log, "reconciliation_matches").height
    finally:
        analyst.close()
    views = projections.sql(data_dir, "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal")
    assert set(projections.NAMES) | {"projection_status"} <= set(views["view_name"])
    columns = projections.sql(
        data_dir,
        "SELECT comment FROM duckdb_columns() WHERE table_name = $1 AND column_name = $2",
        ["reconciliation_summary", "match_rate"],
    )
    assert "matched source records" in columns["comment"][0]


def test_the_views_show_the_published_columns_and_ages_relative_to_the_as_of_time(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log, [])
    projections.update(store)
    for name in projections.NAMES:
        keys = list(projections.runner.model(name).key)
        viewed = projections.sql(data_dir, f"SELECT * FROM {name}").sort(keys)
        expected = projections.read_model(data_dir, name)
        # the stored columns, each analyst column (tenant name, amounts in major units) after its own
        assert viewed.columns == analyst.in_order(expected.columns), name
        assert viewed.select(expected.columns).equals(expected), name


def test_the_events_view_gives_a_runs_audit_trail_by_correlation_id(
    store: EventStore, data_dir: Path, log: pl.DataFrame, make_frame: object
) -> None:
    filler = make_frame(2_000, aggregate_type="Invoice", event_type="InvoiceSent")  # type: ignore[operator]
    filler = filler.with_columns(pl.lit(log["timestamp"][0]).alias("timestamp")).select(APPEND_COLUMNS)
    store.append_frame(pl.concat([log.select(APPEND_COLUMNS), filler]))  # big enough for a segment
    projections.update(store)
    correlation = log["correlation_id"][0]
    trail = projections.sql(
        data_dir,
        "SELECT global_position, event_type, data->>'attempt' AS attempt FROM events "
        "WHERE correlation_id = $1 ORDER BY global_position",
        [correlation],
    )
    expected = log.filter(pl.col("correlation_id") == correlation)
    assert trail["global_position"].to_list() == expected["global_position"].to_list()
    assert trail["event_type"][0] == e.RECONCILIATION_STARTED
    comment = projections.sql(data_dir, "SELECT comment FROM duckdb_views() WHERE view_name = 'events'")
    assert "published" in comment["comment"][0]


def test_the_checkpoint_travels_inside_the_published_file(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    append(store, log.head(80), [])
    projections.update(store)
    import pyarrow.parquet as pq

    meta = pq.read_metadata(data_dir / "read_models" / "tenant_usage_view.parquet").metadata
    assert meta is not None and json.loads(meta[META_KEY.encode()])["position"] == 80


def test_events_of_other_aggregates_move_the_checkpoints_without_changing_the_rows(
    store: EventStore, data_dir: Path, log: pl.DataFrame, make_frame: object
) -> None:
    append(store, log, [])
    projections.update(store)
    before = {n: projections.read_model(data_dir, n) for n in projections.NAMES}
    store.append_frame(make_frame(25, aggregate_type="Invoice", event_type="InvoiceSent"))  # type: ignore[operator]
    statuses = projections.update(store)
    assert {(s["checkpoint"], s["lag"]) for s in statuses} == {(log.height + 25, 0)}
    assert all(projections.read_model(data_dir, n).equals(before[n]) for n in projections.NAMES)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32),
    appends=st.lists(st.integers(1, 120), min_size=1, max_size=4),
    chunk=st.integers(3, 300),
)
def test_updates_after_random_appends_store_and_reload_the_same_tables_as_one_fold(
    tmp_path_factory: pytest.TempPathFactory, seed: int, appends: list[int], chunk: int
) -> None:
    data_dir = tmp_path_factory.mktemp("updates")
    history = random_log(random.Random(seed), runs=8, max_events=250)
    with EventStore.open(data_dir) as store:
        for _ in appended_in_steps(store, history, appends):
            projections.update(store, chunk_events=chunk)
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(history, name)), name


def test_matches_read_from_the_log_outlive_compaction_and_the_retired_files(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    from settler_pipeline.projections.generations import Generations
    from settler_pipeline.store import maintenance

    for start in range(0, log.height, 60):  # several publishes: small segments to compact
        append(store, log.slice(start, 60), [])
        store.publish()
    projections.update(store)
    manifest = Generations(data_dir / "read_models", "reconciliation_matches").manifest()
    assert manifest is not None and manifest["log"]["rows"] > 0  # automatic matches are not copied
    expected = in_memory(log, "reconciliation_matches")
    replaced = maintenance.compact(store).retired
    assert replaced
    maintenance.compact(store, grace_hours=0)  # as if their hour had passed: vacuumed
    assert not any((store.segments_dir / path).exists() for path in replaced)
    assert projections.read_model(data_dir, "reconciliation_matches").equals(expected)
    counted = projections.sql(data_dir, "SELECT count(*) AS n FROM reconciliation_matches")
    assert counted["n"][0] == expected.height
    append(store, log.head(0), [])
    projections.update(store)  # the events generation now names the compacted files
    assert projections.read_model(data_dir, "reconciliation_matches").equals(expected)
    assert (
        projections.sql(data_dir, "SELECT count(*) AS n FROM reconciliation_matches")["n"][0]
        == expected.height
    )


def test_matches_without_the_linked_log_files_fail_clearly_and_an_update_links_them_again(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    import shutil

    from settler_pipeline.errors import CorruptionError

    append(store, log, [])
    projections.update(store)
    root = data_dir / "read_models"
    (root / "events").unlink()
    shutil.rmtree(root / ".gens" / "events")
    with pytest.raises(CorruptionError, match="settler project"):
        projections.read_model(data_dir, "reconciliation_matches")
    projections.update(store)
    expected = in_memory(log, "reconciliation_matches")
    assert projections.read_model(data_dir, "reconciliation_matches").equals(expected)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32),
    steps=st.lists(
        st.tuples(st.integers(1, 150), st.sets(st.sampled_from(projections.NAMES), min_size=1)),
        min_size=1,
        max_size=4,
    ),
    chunk=st.integers(5, 400),
)
def test_read_models_updated_at_different_times_catch_up_to_the_same_tables_as_one_fold(
    tmp_path_factory: pytest.TempPathFactory, seed: int, steps: list[tuple[int, set[str]]], chunk: int
) -> None:
    """Each step appends and updates only some read models, so the final update starts them at
    different checkpoints: its chunks end at each of them (the matches served from the log are
    read as sums, which cannot be cut inside a chunk)."""
    data_dir = tmp_path_factory.mktemp("staggered")
    history = random_log(random.Random(seed), runs=8, max_events=250)
    with EventStore.open(data_dir) as store:
        start = 0
        for size, names in steps:
            part = history.slice(start, size)
            if part.height:
                store.append_frame(part.select(APPEND_COLUMNS))
                start += part.height
            projections.update(store, names=sorted(names), chunk_events=chunk)
        if start < history.height:
            store.append_frame(history.slice(start).select(APPEND_COLUMNS))
        projections.update(store, chunk_events=chunk)
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(history, name)), name


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    appends=st.lists(st.integers(1, 60), min_size=2, max_size=6),
    deltas=st.integers(0, 3),
)
def test_updates_that_rewrite_only_their_runs_parts_and_index_entries_match_a_rebuild(
    tmp_path_factory: pytest.TempPathFactory, seed: int, appends: list[int], deltas: int
) -> None:
    """Tiny parts, so every update takes its runs' rows out of parts shared with other runs and
    merges small parts, and a run index of a base and up to ``deltas`` deltas, reloaded by every
    update: the stored tables after each update are those of one fold, and of a rebuild."""
    from settler_pipeline.projections import generations
    from settler_pipeline.projections.exceptions import ReconciliationExceptions
    from settler_pipeline.projections.matches import ReconciliationMatches
    from settler_pipeline.projections.summary import ReconciliationSummary

    data_dir = tmp_path_factory.mktemp("per-run")
    history = random_log(random.Random(seed), runs=10, max_events=200)
    with pytest.MonkeyPatch.context() as patch, EventStore.open(data_dir) as store:
        patch.setattr(ReconciliationSummary, "classes", {"runs": 2})
        patch.setattr(ReconciliationExceptions, "classes", {"open": 3})
        patch.setattr(ReconciliationMatches, "classes", {"auto": 4, "review": 2})
        patch.setattr(generations, "MAX_DELTAS", deltas)
        patch.setattr(generations, "DELTA_FRACTION", 0)
        for appended in appended_in_steps(store, history, appends):
            projections.update(store)
            for name in projections.NAMES:
                expected = in_memory(history.head(appended), name)
                assert projections.read_model(data_dir, name).equals(expected), name
        stepped = {name: projections.read_model(data_dir, name) for name in projections.NAMES}
        projections.rebuild(store)
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(stepped[name]), name


def test_a_data_directory_of_the_older_layout_is_brought_to_parts_and_run_index_deltas(
    store: EventStore, data_dir: Path, log: pl.DataFrame
) -> None:
    """The summary as one file and a run index as one ``.runs.parquet`` per generation (the layout
    before both were kept per run): the next update reads them, rebuilds the summary as parts,
    removes its file once the views read the parts, and writes the run index as a base."""
    import shutil

    from settler_pipeline.projections.generations import Generations

    append(store, log.head(150), [])
    projections.update(store)
    root = data_dir / "read_models"
    summary = in_memory(log.head(150), "reconciliation_summary")
    write_table(
        root / "reconciliation_summary.parquet", summary, Checkpoint("reconciliation_summary", 1, 150)
    )
    (root / "reconciliation_summary").unlink()
    shutil.rmtree(root / ".gens" / "reconciliation_summary")
    gens = Generations(root, "reconciliation_exceptions")
    loaded = gens.load()
    assert loaded is not None
    generation, manifest, index = loaded
    index.to_frame().write_parquet(gens.dir / f"g{generation:06d}.runs.parquet")
    del manifest["run_index"]
    (gens.dir / f"g{generation:06d}.json").write_text(json.dumps(manifest))
    append(store, log.slice(150), [])
    projections.update(store)
    assert not (root / "reconciliation_summary.parquet").exists()
    for name in projections.NAMES:
        assert projections.read_model(data_dir, name).equals(in_memory(log, name)), name
    shown = projections.sql(data_dir, "SELECT count(*) AS n FROM reconciliation_summary")
    assert shown["n"][0] == in_memory(log, "reconciliation_summary").height
    after = Generations(root, "reconciliation_exceptions").manifest()
    assert after is not None and len(after["run_index"]) == 1
