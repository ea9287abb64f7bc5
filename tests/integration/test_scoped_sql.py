"""`Settler.sql` opens only the read models a query names, and only the tenant's rows of them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline import projections
from settler_pipeline.errors import CorruptionError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


def reconciled(root: Path, *, records: int, days: int) -> Path:
    """A data directory under ``root`` where alice (admin of acme) reconciled a sample of ``records``
    over ``days`` days from 2026-11-01, with its read models up to date."""
    spec, _ = write_sample_job(root / "inputs", records=records, start=date(2026, 11, 1), days=days, seed=3)
    data = root / "data"
    with Settler(data, user="alice") as app:
        app.access.create_tenant("acme", admin="alice")
        app.reconcile(spec, start=date(2026, 11, 1), end=date(2026, 10, 31) + timedelta(days=days))
        projections.update(app.store)
    return data


def test_a_query_reads_only_the_read_models_it_names(tmp_path: Path) -> None:
    data = reconciled(tmp_path, records=400, days=3)
    with Settler(data, user="alice") as app:
        matches = app.read_model("reconciliation_matches")
        # the analysts' events view has the payload fields as typed columns (the documented query)
        typed = projections.sql(
            data,
            "SELECT currency, count(*) AS matches, sum(amount) AS amount_minor FROM events "
            "WHERE event_type = 'RecordMatched' AND payload_typed GROUP BY currency",
        )
        automatic = matches.filter(pl.col("status") == "matched")
        assert typed["matches"].sum() == automatic.height > 0
        assert typed["amount_minor"].sum() == automatic["amount"].sum()
        counted = app.sql("SELECT count(*) AS n, sum(amount_major) AS total FROM reconciliation_matches")
        assert counted["n"][0] == matches.height > 0
        assert counted["total"][0] == matches["amount_major"].sum()
        assert matches.columns[matches.columns.index("tenant_id") + 1] == "tenant"
        assert matches.equals(matches.sort(list(projections.model("reconciliation_matches").key)))

        # A look at the catalogue names no read model: it sees all of them, as in analytics.duckdb.
        listed = set(app.sql("SHOW TABLES")["name"].to_list())
        built = {name for name in projections.NAMES if projections.is_built(data, name)}
        assert "reconciliation_summary" in built and built <= listed
        columns = app.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'reconciliation_summary'"
        )
        assert {"tenant", "match_rate"} <= set(columns["column_name"].to_list())

        # Remove the exceptions read model's files: queries that do not name it still run.
        parts = data / "read_models" / ".gens" / "reconciliation_exceptions"
        for path in parts.rglob("*.parquet"):
            path.unlink()
        summary = app.sql("SELECT status FROM reconciliation_summary")
        assert summary["status"].to_list() == ["completed"]
        assert app.sql("SELECT count(*) AS n FROM reconciliation_matches")["n"][0] == matches.height
        with pytest.raises(CorruptionError, match="read model reconciliation_exceptions cannot be read"):
            app.sql("SELECT count(*) FROM reconciliation_exceptions")


def test_the_analyst_database_shows_the_same_columns_and_values_as_settler_sql(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=300, start=date(2026, 11, 1), days=2, seed=5)
    data = tmp_path / "data"
    with Settler(data, user="alice") as app:
        app.access.create_tenant("acme", admin="alice")
        app.reconcile(spec, start=date(2026, 11, 1), end=date(2026, 11, 2))
        projections.update(app.store, tenant_names=app.access.tenant_names())
        for name in projections.NAMES:
            if not projections.is_built(data, name):
                continue
            key = ", ".join(projections.model(name).key)
            through_cli = app.sql(f"SELECT * FROM {name} ORDER BY {key}")
            direct = projections.sql(data, f"SELECT * FROM {name} ORDER BY {key}")
            assert direct.columns == through_cli.columns, name
            assert direct.equals(through_cli), name
        matches = projections.sql(data, "SELECT tenant, amount, amount_major FROM reconciliation_matches")
        assert set(matches["tenant"]) == {"acme"}
        assert matches.height > 0 and str(matches.schema["amount_major"]) == "Decimal(precision=38, scale=2)"
        assert (matches["amount_major"] * 100).cast(pl.Int64).to_list() == matches["amount"].to_list()

        # an update given no names (the Python API's default) keeps the names the previous one was given
        projections.update(app.store)
        shown = projections.sql(data, "SELECT DISTINCT tenant FROM reconciliation_summary")
        assert shown["tenant"].to_list() == ["acme"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reconciled(tmp_path_factory.mktemp("limits"), records=60, days=1)


def _settler_sql(data: Path, query: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SETTLER_DATA_DIR": str(data), "SETTLER_USER": "alice", **settings}
    return subprocess.run(
        [str(Path(sys.executable).parent / "settler"), "sql", query],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip


def test_a_query_running_past_the_time_limit_is_stopped_with_an_error_naming_the_setting(
    small_data: Path,
) -> None:
    # a query that would run for hours must not hold the process (or a notebook's kernel) forever
    started = time.monotonic()
    done = _settler_sql(
        small_data, "SELECT count(*) FROM range(10000000000000)", SETTLER_SQL_TIMEOUT_SECONDS="1"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    assert "error: the query ran longer than 1 s and was stopped" in done.stderr, done.stderr
    assert "SETTLER_SQL_TIMEOUT_SECONDS" in done.stderr and "Traceback" not in done.stderr
    # a quick query is untouched by the limit
    quick = _settler_sql(
        small_data, "SELECT count(*) AS n FROM reconciliation_summary", SETTLER_SQL_TIMEOUT_SECONDS="1"
    )
    assert quick.returncode == 0, quick.stderr


def test_a_query_needing_more_memory_than_allowed_fails_with_an_error_naming_the_setting(
    small_data: Path,
) -> None:
    # DuckDB's own default is 80 % of the machine's memory (and 90 % of the disk to spill to): one
    # query could starve every other process on the host, the pipeline's included
    limit = {"SETTLER_SQL_MEMORY_LIMIT": "64MiB"}
    done = _settler_sql(small_data, "SELECT len(list(i)) AS n FROM range(30000000) t(i)", **limit)
    assert done.returncode == 1, done.stdout[:500] + done.stderr
    assert "error: the query needs more memory than settler sql may use (64.0 MiB)" in done.stderr, (
        done.stderr
    )
    assert "SETTLER_SQL_MEMORY_LIMIT" in done.stderr and "Traceback" not in done.stderr
    # the rows it returns count too: they are held in memory (the API's frame, --json's list)
    rows = _settler_sql(small_data, "SELECT * FROM range(20000000)", **limit)
    assert rows.returncode == 1, rows.stdout[:500] + rows.stderr
    assert "error: the query's result is larger than settler sql may return (64.0 MiB)" in rows.stderr, (
        rows.stderr
    )
    # what it may spill to disk is bounded too
    spill = _settler_sql(
        small_data,
        "SELECT value FROM duckdb_settings() WHERE name = 'max_temp_directory_size'",
        **limit,
    )
    assert spill.returncode == 0 and "64.0 MiB" in spill.stdout, spill.stdout + spill.stderr
