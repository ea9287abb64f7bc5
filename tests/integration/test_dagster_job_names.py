"""Job specs whose assets would clash (two specs of one name, a spec named like a read model) are
reported as broken specs; the code location still loads with every other asset."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.definitions import definitions_of
from dagster_project.reconciliations import job_spec_assets
from settler_pipeline.ids import new_id
from settler_pipeline.sample_job import write_sample_job


def test_a_spec_whose_asset_is_taken_is_broken_and_the_location_still_loads(tmp_path: Path) -> None:
    spec, _ = write_sample_job(
        tmp_path / "jobs", records=30, start=date(2026, 11, 2), days=1, seed=1, name="daily"
    )
    text = spec.read_text()
    (tmp_path / "jobs" / "daily-copy.yaml").write_text(text)  # a copy being edited: the same name
    (tmp_path / "jobs" / "summary.yaml").write_text(text.replace("name: daily", "name: summary"))
    (tmp_path / "jobs" / "matches.yaml").write_text(text.replace("name: daily", "name: matches"))
    found = job_spec_assets(tmp_path / "jobs")
    assert {p.name for p in found.broken} == {"daily.yaml", "summary.yaml", "matches.yaml"}, found.broken
    assert "already the asset of daily-copy.yaml" in found.broken[tmp_path / "jobs" / "daily.yaml"]
    assert "already a read model" in found.broken[tmp_path / "jobs" / "summary.yaml"]
    keys = definitions_of(found).resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey("reconciliation_daily") in keys and dg.AssetKey("reconciliation_summary") in keys


def test_a_spec_naming_a_tenant_the_data_directory_does_not_know_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Partitioned by every tenant instead (as a spec naming none is), a typo in its tenant_id would let
    # a materialization run it for any tenant.
    monkeypatch.setenv("SETTLER_DATA_DIR", str(tmp_path / "data"))
    spec, _ = write_sample_job(
        tmp_path / "jobs", records=30, start=date(2026, 11, 2), days=1, seed=1, name="daily"
    )
    spec.write_text(f"tenant_id: {new_id()}\n" + spec.read_text())
    found = job_spec_assets(tmp_path / "jobs")
    assert "is no tenant of this data directory" in found.broken[spec], found.broken
    assert found.assets == []
