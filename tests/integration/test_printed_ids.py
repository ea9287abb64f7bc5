"""Every id `settler review list` prints is accepted back as printed: a record id holding a line feed,
a zero-width space or a bidirectional override is printed with visible escapes (``\\x0a``,
``\\u200b``, ``\\u202e``), and those escapes name the record in review commands."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from settler_pipeline.cli.main import app
from settler_pipeline.session import Settler

DAY = date(2026, 11, 2)
COLUMNS = "{record_id: id, occurred_at: date, amount: amount, currency: currency}"
SPEC = f"""name: odd-ids
source: {{adapter: csv, path: source.csv, columns: {COLUMNS}}}
target: {{adapter: csv, path: target.csv, columns: {COLUMNS}}}
matching:
  passes:
    - kind: amount_date
"""
ODD = {"new\nline": "new\\x0aline", "zero\u200bwidth": "zero\\u200bwidth", "\u202eevil": "\\u202eevil"}


def test_ids_with_invisible_characters_are_accepted_as_printed(tmp_path: Path) -> None:
    rows = "".join(f'"{odd}",2026-11-02,{n}.00,EUR\n' for n, odd in enumerate(ODD, start=1))
    (tmp_path / "source.csv").write_text("id,date,amount,currency\n" + rows)
    (tmp_path / "target.csv").write_text("id,date,amount,currency\nt1,2026-11-02,99.00,EUR\n")
    (tmp_path / "job.yaml").write_text(SPEC)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
        run = settler.reconcile(tmp_path / "job.yaml", start=DAY, end=DAY).reconciliation_id
    env = {"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"}
    listed = CliRunner().invoke(app, ["review", "list", run], env=env)
    assert listed.exit_code == 0, listed.output
    printed = [f"unmatched:source:{shown}" for shown in ODD.values()]
    assert all(item in listed.stdout for item in printed), listed.stdout
    dismissed = CliRunner().invoke(app, ["review", "dismiss", run, *printed, "--reason", "test"], env=env)
    assert dismissed.exit_code == 0, dismissed.output
    with Settler(data, user="olivia") as settler:
        still_open = set(settler.state(run).open_exceptions)
    assert still_open == {"unmatched:target:t1"}
