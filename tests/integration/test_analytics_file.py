"""The analyst file travels with its data directory and never blocks the pipeline: its views name files
relative to the data directory, and a read-write holder of it makes neither an update nor a query fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import duckdb
import pytest

from settler_pipeline import projections
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


@pytest.fixture
def data(tmp_path: Path) -> Path:
    spec, _ = write_sample_job(tmp_path / "inputs", records=300, start=date(2026, 11, 1), days=3, seed=9)
    data = tmp_path / "data"
    with Settler(data, user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        app.reconcile(spec, start=date(2026, 11, 2), end=date(2026, 11, 2))
        projections.update(app.store, data)
    return data


def runs(data: Path) -> int:
    return int(projections.sql(data, "SELECT count(*) AS n FROM reconciliation_summary")["n"][0])


def test_a_copied_data_directory_reads_its_own_files(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(data, copy, symlinks=True)
    shutil.rmtree(data / "read_models")  # the original's files are gone: only the copy's remain
    assert runs(copy) == 1
    rows = projections.sql(copy, "SELECT count(*) AS n FROM reconciliation_matches")["n"][0]
    assert rows > 0
    # The DuckDB CLI way: started in the copied directory, the file finds its neighbours.
    analyst = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb; con = duckdb.connect('analytics.duckdb', read_only=True); "
            "print(con.sql('SELECT count(*) FROM reconciliation_summary').fetchall()[0][0])",
        ],
        cwd=copy,
        capture_output=True,
        text=True,
        check=True,
    )
    assert analyst.stdout.strip() == "1"
    with pytest.raises(duckdb.IOException):  # and nothing points back at the original
        projections.sql(data, "SELECT count(*) FROM reconciliation_summary")


def test_a_read_write_holder_never_makes_an_update_or_a_query_fail(data: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys
                con = duckdb.connect({str(data / "analytics.duckdb")!r})  # read-write: locks the file
                print("holding", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException):  # the lock is real
            duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
        spec = data.parent / "inputs" / "sample.yaml"
        with Settler(data, user="ops") as app:
            app.reconcile(spec, start=date(2026, 11, 3), end=date(2026, 11, 3))
            projections.update(app.store, data)
            (data / "read_models" / ".views.json").unlink()  # as if the views changed: a rebuild
            projections.update(app.store, data)
        assert runs(data) == 2
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert runs(data) == 2 and os.path.exists(data / "analytics.duckdb")


def test_no_file_name_in_a_generation_ever_holds_other_content(data: Path, tmp_path: Path) -> None:
    # DuckDB expands a view's glob through the generation symlink and opens each file afterwards: if a
    # swap comes between, the same name must either name the same bytes or not exist (an error the
    # analyst runs again), never another generation's different file (wrong rows or a Thrift error).
    import hashlib

    spec = next((tmp_path / "inputs").glob("*.yaml"))
    with Settler(data, user="ops") as app:
        app.reconcile(spec, start=date(2026, 11, 3), end=date(2026, 11, 3))
        projections.update(app.store, data)
        projections.rebuild(app.store, data)
    contents: dict[str, set[str]] = {}
    generations = sorted((data / "read_models" / ".gens").glob("*/g??????"))
    assert len({g.parent.name for g in generations}) >= 2 and len(generations) >= 6, generations
    for generation in generations:
        for path in generation.iterdir():
            key = f"{generation.parent.name}/{path.name}"
            contents.setdefault(key, set()).add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert any("log_position" in key for key in contents)  # the filter files are among them
    assert {key: len(shas) for key, shas in contents.items() if len(shas) > 1} == {}
    assert runs(data) == 2
