"""Multi-part storage of read models: parts by run, rewrites of only what changed, merges of small parts,
and generations published by one symlink swap."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from settler_pipeline.projections import generations, parts
from settler_pipeline.projections.checkpoint import Checkpoint, publish_staged, read_table, write_table
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.parts import MemoryStorage, PartedTable

SCHEMA = {"reconciliation_id": pl.String(), "n": pl.Int64(), "kind": pl.String()}


def rows(run: str, *values: int, kind: str = "a") -> pl.DataFrame:
    return pl.DataFrame(
        {"reconciliation_id": [run] * len(values), "n": list(values), "kind": [kind] * len(values)},
        schema=SCHEMA,
    )


def table(storage: parts.PartStorage | None = None, **kwargs: object) -> PartedTable:
    def classify(frame: pl.DataFrame) -> pl.Series:
        return frame["kind"]

    return PartedTable(SCHEMA, {"a": 64, "b": 64}, classify, storage or MemoryStorage(), **kwargs)  # type: ignore[arg-type]


def next_generation(gens: Generations) -> tuple[parts.DirectoryStorage, PartedTable, Any]:
    """The storage and table of ``gens``'s next generation, from the committed one (and what loaded)."""
    generation, storage = gens.begin(fresh=False)
    loaded = gens.load()
    t = table(
        storage,
        parts=[parts.Part(**p) for p in loaded[1]["parts"]] if loaded else (),
        runs=loaded[2] if loaded else None,
        generation=generation,
    )
    return storage, t, loaded


def test_taking_a_runs_rows_rewrites_only_the_parts_that_held_them() -> None:
    t = table()
    t.append(pl.concat([rows("r1", 1, 2), rows("r2", 3)]))
    t.append(rows("r3", 4, kind="b"))
    before = dict(t.parts)
    taken = t.take(pl.Series(["r1"]))
    assert sorted(taken["n"].to_list()) == [1, 2]
    t.append(rows("r1", 9))
    t.flush()
    assert sorted(t.all_rows()["n"].to_list()) == [3, 4, 9]
    unchanged = [n for n, p in before.items() if p.cls == "b"]
    assert all(n in t.parts for n in unchanged)
    assert set(t.runs_with_rows(pl.Series(["r1", "r2", "r9"])).to_list()) == {"r1", "r2"}


def test_taking_only_one_class_leaves_the_other_classes_parts_alone() -> None:
    t = table()
    t.append(pl.concat([rows("r1", 1), rows("r1", 2, kind="b")]))
    taken = t.take(pl.Series(["r1"]), classes={"b"})
    assert taken["n"].to_list() == [2]
    t.flush()
    assert t.all_rows()["n"].to_list() == [1]


def test_many_small_parts_of_a_class_are_merged_and_no_row_is_lost() -> None:
    t = table()
    for i in range(20):
        t.append(rows(f"r{i}", i))
    assert len(t.parts) == 20
    t.compact()
    assert len(t.parts) < 20
    assert sorted(t.all_rows()["n"].to_list()) == list(range(20))
    assert t.row_count == 20


def test_the_run_index_remembers_attempts_of_runs_without_rows() -> None:
    t = table()
    t.set_attempts(pl.DataFrame({"reconciliation_id": ["r1", "r2"], "attempt": [1, 2]}))
    t.append(rows("r2", 5))
    t.set_attempts(pl.DataFrame({"reconciliation_id": ["r1"], "attempt": [3]}))
    index = t.runs_frame()
    assert index.select("reconciliation_id", "attempt").unique().sort("reconciliation_id").rows() == [
        ("r1", 3),
        ("r2", 2),
    ]
    again = table(runs=index)
    assert again.known_attempts().sort("reconciliation_id").rows() == [("r1", 3), ("r2", 2)]


def test_a_generation_is_published_by_one_symlink_swap_and_old_ones_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gens = Generations(tmp_path, "things")
    for value in (1, 2, 3):
        storage, t, _ = next_generation(gens)
        t.append(rows(f"r{value}", value))
        t.ensure_part()
        publish_staged(tmp_path, [gens.stage(t, storage, Checkpoint("things", 1, position=value))])
        assert os.readlink(tmp_path / "things").endswith(f"g{t.generation:06d}")
    published = pl.read_parquet(tmp_path / "things" / "*.parquet")
    assert sorted(published["n"].to_list()) == [1, 2, 3]
    assert (tmp_path / ".gens" / "things" / "g000001").exists()  # kept for readers still on it
    monkeypatch.setattr(generations, "GRACE_S", -1.0)
    gens.clean()
    loaded = gens.load()
    assert loaded is not None and loaded[1]["checkpoint"]["position"] == 3
    assert not (tmp_path / ".gens" / "things" / "g000001").exists()


def test_every_file_a_generation_wrote_is_durable_before_the_swap_that_commits_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gens = Generations(tmp_path, "things")
    generation, storage = gens.begin(fresh=True)
    t = table(storage, generation=generation)
    t.append(pl.concat([rows(f"r{i}", i, i + 1) for i in range(100)]))  # 200 rows: four parts of 64
    assert len(t.parts) == 4
    extra = storage.work_dir / "extra.parquet"
    rows("r", 1).write_parquet(extra)
    synced: set[Path] = set()
    seen_at_swap: list[set[Path]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: object, target: object) -> None:
        if Path(str(target)) == tmp_path / "things":
            seen_at_swap.append(set(synced))
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    publish_staged(tmp_path, [gens.stage(t, storage, Checkpoint("things", 1, position=1), written=[extra])])
    assert len(seen_at_swap) == 1
    directory = tmp_path / ".gens" / "things"
    wanted = {directory / f"g{generation:06d}" / name for name in t.parts} | {
        extra,
        directory / f"g{generation:06d}" / f"runs-g{generation:06d}.index",
        directory / f"g{generation:06d}.json",
        directory / f"g{generation:06d}",  # the entries naming the parts
        directory,  # the entries naming the manifest and the generation
    }
    assert wanted <= {p.resolve() for p in seen_at_swap[0]}, wanted - seen_at_swap[0]
    assert tmp_path.resolve() in synced  # the swap itself, after it


def test_the_run_index_is_stored_as_a_base_and_deltas_that_load_as_the_index_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generations, "MAX_DELTAS", 3)
    monkeypatch.setattr(generations, "DELTA_FRACTION", 0)  # however many runs the deltas name
    gens = Generations(tmp_path, "things")
    rng = random.Random(5)
    kinds = []
    expected = pl.DataFrame()
    for step in range(12):
        storage, t, loaded = next_generation(gens)
        generation = t.generation
        if loaded:  # what was stored loads back as it was written
            assert loaded[2].to_frame().equals(expected)
        # 200 runs at first, then a few changed each step: new rows, rows taken, attempts moved
        runs = [f"r{i}" for i in (range(200) if step == 0 else rng.sample(range(260), 6))]
        t.take(pl.Series(runs[:2]))
        t.append(pl.concat([rows(r, step) for r in runs[2:]]))
        t.set_attempts(pl.DataFrame({"reconciliation_id": runs[1:4], "attempt": [step + 1] * 3}))
        t.flush()
        t.ensure_part()
        expected = t.runs_frame()
        publish_staged(tmp_path, [gens.stage(t, storage, Checkpoint("things", 1, position=step))])
        kinds.append(len(json.loads((gens.dir / f"g{generation:06d}.json").read_text())["run_index"]))
    loaded = gens.load()
    assert loaded is not None and loaded[2].to_frame().equals(expected)
    assert 1 in kinds[1:] and max(kinds) == 4  # deltas after a base, then a new base after three
    assert not list((tmp_path / "things").glob("*.parquet")) or all(
        p.name.startswith("part-") for p in (tmp_path / "things").glob("*.parquet")
    )


def test_a_single_file_read_model_carries_its_checkpoint_in_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "model.parquet"
    assert read_table(path) is None
    write_table(path, rows("r", 1), Checkpoint("model", 3, position=42))
    stored = read_table(path)
    assert stored is not None
    frame, checkpoint = stored
    assert frame.equals(rows("r", 1)) and (checkpoint.version, checkpoint.position) == (3, 42)
    assert [p.name for p in tmp_path.iterdir()] == ["model.parquet"]  # no temporary file left behind


def test_a_part_records_the_currencies_of_its_rows_for_the_views_and_a_rewrite_drops_the_gone_ones() -> None:
    schema = {"reconciliation_id": pl.String(), "currency": pl.String()}
    t = PartedTable(schema, {"a": 64}, lambda f: pl.Series(["a"] * f.height), MemoryStorage())
    t.append(pl.DataFrame({"reconciliation_id": ["r1", "r1", "r2"], "currency": ["EUR", "JPY", None]}))
    assert [p.currencies for p in t.parts.values()] == [("EUR", "JPY")]
    t.take(pl.Series(["r1"]))
    t.flush()
    assert [p.currencies for p in t.parts.values()] == [()]
    assert table().parts == {} and all(p.currencies is None for p in _appended(table()).parts.values())


def _appended(t: PartedTable) -> PartedTable:
    t.append(rows("r1", 1))
    return t


def test_a_table_staged_but_never_swapped_in_leaves_the_published_file_and_no_staging_file(
    tmp_path: Path,
) -> None:
    from settler_pipeline.projections.checkpoint import Staged, stage_table

    path = tmp_path / "model.parquet"
    write_table(path, rows("r", 1), Checkpoint("model", 3, position=1))

    def fail() -> None:
        raise OSError("disk full")

    staged = stage_table(path, rows("r", 2), Checkpoint("model", 3, position=2))
    with pytest.raises(OSError, match="disk full"):
        publish_staged(tmp_path, [Staged((), fail), staged])
    stored = read_table(path)
    assert stored is not None and stored[1].position == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.parquet"]
