"""Errors say what is really wrong and exit with the code the README promises: a data directory with
tenants but no runs, a damaged access file (3: damaged data), a data directory that is a file, a run
refused for memory, a cancel of a finished run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from settler_pipeline.application.outcome import RunOutcome
from settler_pipeline.cli.main import app
from settler_pipeline.cli.runs import failure_hint
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"SETTLER_USER": "olivia"})
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def test_a_data_directory_with_tenants_but_no_runs_says_so(tmp_path: Path) -> None:
    data = str(tmp_path / "n")
    assert invoke("access", "create-tenant", "newco", "-d", data)[0] == 0
    code, err = invoke("runs", "-d", data)
    assert code == 1 and "has tenants but no runs yet" in err and "settler reconcile" in err
    assert "no Settler data" not in err


def test_a_damaged_access_file_is_damaged_data(tmp_path: Path) -> None:
    data = tmp_path / "n"
    assert invoke("access", "create-tenant", "newco", "-d", str(data))[0] == 0
    (data / "access.json").write_text("{not json")
    code, err = invoke("access", "list", "-d", str(data))
    assert code == 3 and "access file" in err and "damaged" in err


def test_a_data_directory_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0\n")
    code, err = invoke("runs", "-d", str(file))
    assert code == 1 and "is a file" in err and "TOML" not in err
    # commands that create folders say what is in the way, not "internal error" (exit 2)
    for args in (("access", "create-tenant", "x", "-d", str(file)), ("sample", str(file / "sub"))):
        code, err = invoke(*args)
        assert code == 1 and "internal error" not in err, (args, err)


def test_a_memory_refusal_hints_at_memory_not_at_the_input() -> None:
    refused = RunOutcome("r", "failed", 1, 3, error={"type": "InsufficientMemoryError", "message": "m"})
    hint = failure_hint(refused)
    assert "max_memory" in hint and "block_records" in hint and "fix the input" not in hint
    other = RunOutcome("r", "failed", 1, 3, error={"type": "NotFoundError", "message": "m"})
    assert "fix the input" in failure_hint(other)


def test_cancelling_or_retrying_a_completed_run_says_why_and_what_to_do(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "in", records=20, start=date(2026, 11, 1), days=1)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
        run = settler.reconcile(spec, start=date(2026, 11, 1), end=date(2026, 11, 1)).reconciliation_id
    code, err = invoke("cancel", run, "--reason", "test", "-d", str(data))
    assert code == 1 and "cannot be cancelled" in err and "--help" not in err and "settler state" in err
    code, err = invoke("retry", run, "-d", str(data))
    assert code == 1 and "can be retried" in err and "--supersede" in err and "--help" not in err


def test_a_csv_header_of_a_megabyte_or_of_100000_columns_is_a_short_user_error(tmp_path: Path) -> None:
    # A header the spec's columns are not in is named in the error, not echoed: a name of a megabyte
    # (over the csv module's field limit, once an internal error) and 100,000 names are both cut.
    spec, _ = write_sample_job(tmp_path / "in", records=50, start=date(2026, 11, 2), days=1, seed=1)
    data = str(tmp_path / "data")
    assert invoke("access", "create-tenant", "newco", "-d", data)[0] == 0
    source = spec.parent / "source.csv"
    for header in ("n" * (2 << 20), ",".join(f"c{i}" for i in range(100_000))):
        source.write_text(f"{header}\n1\n")
        code, err = invoke("reconcile", str(spec), "--from", "2026-11-02", "-d", data)
        assert code == 1 and "columns there:" in err and "internal error" not in err, err[:500]
        assert len(err) < 1500, err[:500]
    assert "and 99950 more" in err


@pytest.mark.parametrize("name", ["q?r", "p%41", "b[1]", "t\tx", "b\\s"])
def test_a_data_directory_the_logs_libraries_cannot_address_is_refused_before_anything_is_written(
    tmp_path: Path, name: str
) -> None:
    # deltalake decodes %41 and \, refuses control characters; DuckDB reads ? as URL parameters;
    # Polars reads [..] as a glob: each failed on the first commit or read-model update, exit 2.
    spec, _ = write_sample_job(tmp_path / "in", records=50, start=date(2026, 11, 2), days=1, seed=1)
    data = tmp_path / name
    for args in (("access", "create-tenant", "newco"), ("reconcile", str(spec), "--from", "2026-11-02")):
        code, err = invoke(*args, "-d", str(data))
        assert code == 1 and "cannot hold a Settler log" in err and "internal error" not in err, err
    assert not data.exists()
    code, _ = invoke("access", "create-tenant", "newco", "-d", str(tmp_path / "spaced and accented é"))
    assert code == 0
