"""Records read only as margin (the days around a run's range) are counterparts, not the run's own
records: they do not count in its match rate (real CSV files, the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from settler_pipeline.cli.main import app
from settler_pipeline.session import Settler

HEADER = "id,amount,currency,date\n"
SPEC = """name: {name}
source:
  adapter: csv
  path: {name}-source.csv
  columns: {{record_id: id, amount: amount, currency: currency, occurred_at: date}}
target:
  adapter: csv
  path: {name}-target.csv
  columns: {{record_id: id, amount: amount, currency: currency, occurred_at: date}}
"""


def _store(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("t", admin="olivia")
    return data


def _reconcile(data: Path, name: str, source: list[str], target: list[str], day: str) -> dict[str, object]:
    folder = data.parent
    (folder / f"{name}-source.csv").write_text(HEADER + "".join(f"{row}\n" for row in source))
    (folder / f"{name}-target.csv").write_text(HEADER + "".join(f"{row}\n" for row in target))
    (folder / f"{name}.yaml").write_text(SPEC.format(name=name))
    result = CliRunner().invoke(
        app,
        ["reconcile", str(folder / f"{name}.yaml"), "--tenant", "t", "--from", day, "--json"],
        env={"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"},
    )
    assert result.exit_code == 0, result.stderr
    summary: dict[str, object] = json.loads(result.stdout)["summary"]
    return summary


def test_the_match_rate_counts_only_the_runs_own_source_records(tmp_path: Path) -> None:
    data = _store(tmp_path)
    # s1 and t1 lie the day before the run's range: read as margin, matched to each other.
    summary = _reconcile(
        data,
        "rate",
        ["s1,10.00,EUR,2026-11-25", "s2,99.00,EUR,2026-11-26"],
        ["t1,10.00,EUR,2026-11-25"],
        "2026-11-26",
    )
    assert summary["match_rate"] == 0.0  # s2, the run's only own source record, is unmatched
    empty = _reconcile(data, "empty", ["s1,10.00,EUR,2026-11-25"], ["t1,10.00,EUR,2026-11-25"], "2026-11-26")
    assert empty["match_rate"] is None  # no source record of its own: an empty run, not 100 %
