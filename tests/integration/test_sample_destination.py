"""`settler sample` never writes into a Settler data directory's own folders: the data directory
itself, its log or its read models are refused with what to do instead, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from settler_pipeline.cli.main import app
from settler_pipeline.session import Settler


@pytest.mark.parametrize(
    "inside", ["", "log", "log/segments", "read_models/new", ".dagster", "leases", "locks", "work/x"]
)
def test_sample_refuses_a_data_directory_and_its_folders(tmp_path: Path, inside: str) -> None:
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
    target = data / inside if inside else data
    before = sorted(p for p in data.rglob("*"))
    result = CliRunner().invoke(app, ["sample", str(target), "--records", "20", "--days", "1"])
    assert result.exit_code == 1, result.output
    assert "Settler data directory" in result.stderr and "Traceback" not in result.output
    assert sorted(p for p in data.rglob("*")) == before


def test_sample_writes_beside_a_data_directory_and_into_its_input_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
    for folder in (tmp_path / "exports", data / "inputs" / "acme"):
        result = CliRunner().invoke(app, ["sample", str(folder), "--records", "20", "--days", "1"])
        assert result.exit_code == 0, result.output
        assert (folder / "sample.yaml").is_file()


def test_sample_refuses_a_folder_holding_its_files_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    real = b"id,amount\nch_1,12.00\n"
    (folder / "source.csv").write_bytes(real)
    (folder / "notes.txt").write_text("kept")
    args = ["sample", str(folder), "--records", "5", "--days", "1"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1, refused.output
    assert "source.csv" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.output
    assert (folder / "source.csv").read_bytes() == real
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "source.csv"]
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (folder / "source.csv").read_bytes() != real and (folder / "sample.yaml").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "sample.yaml" in again.stderr and "truth.parquet" in again.stderr
