"""`settler demo`: Settler end to end on the embedded data directory, with a report and next steps."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from settler_pipeline.cli.options import DataDirOption
from settler_pipeline.cli.output import command, console, emit_table

SUMMARY_QUERY = (
    "SELECT tenant, period_start, status, match_rate FROM reconciliation_summary "
    "ORDER BY tenant, period_start"
)


@command
def demo_command(data_dir: DataDirOption = Path("data")) -> None:
    """Generate sample exports for three tenants, reconcile them day by day (one run fails on a missing
    file, one is cancelled), build snapshots and read models through Dagster, and report."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from settler_pipeline.demo import DEMO_USER, dagster_log, run_demo

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("demo", total=None)
        report = run_demo(data_dir, progress=lambda message: bar.update(task, description=message))
    rows = [
        {
            "run": r["short"],
            "tenant": r["tenant"],
            "day": r["day"],
            "status": r["status"],
            "match rate": (f"{r['match_rate']:.1%}" if r["match_rate"] is not None else "empty run")
            if r["status"] == "completed"
            else "",
            "matches": r["matched"] if r["matched"] is not None else "",
            "open exceptions": r["exceptions"],
            "note": (r["error"] or "")[:60],
        }
        for r in report.runs
    ]
    emit_table("reconciliation runs", rows)
    root = report.data_dir
    first = report.runs[0]["short"]
    who = f"-d {shlex.quote(str(root))} --user {DEMO_USER}"
    me = settler_command()
    console.print(
        f"\n{report.events:,} events in the log, {report.exceptions_open:,} open "
        f"exceptions to review, Dagster checks passed: {report.checks_passed}/{report.checks_total}.\n"
        f"\nWhere things are:\n"
        f"  event log      {root / 'log'}  (Parquet segments, readable by any engine)\n"
        f"  read models    {root / 'read_models'}\n"
        f"  analyst SQL    {root / 'analytics.duckdb'}  (open it read-only any time)\n"
        f"  inputs         {root / 'inputs'}\n"
        f"  Dagster's log  {dagster_log(root)}\n"
        f"\nNext:\n"
        f"  {me} runs {who}\n"
        f"  {me} review list {first} {who}\n"
        f'  {me} sql "{SUMMARY_QUERY}" {who}\n'
        f"  {me} state {first} --at-position {report.example_position} {who}\n"
        f"  {dagster_command(root, report.dagster_home)}   # the Dagster UI on this data\n"
        f"  notebooks/explore.ipynb\n",
        markup=False,
        soft_wrap=True,  # commands must stay on one line to be copied as printed
    )


def settler_command() -> str:
    """How to start this same ``settler`` from any directory: ``settler`` when that is what ``PATH``
    finds, else the running script's absolute path, else this interpreter with ``-m``."""
    script = Path(sys.argv[0])
    if script.name == "settler" and script.is_file():
        running = script.absolute()
        found = shutil.which("settler")
        if found is not None and Path(found).resolve() == running.resolve():
            return "settler"
        return shlex.quote(str(running))
    return f"{shlex.quote(sys.executable)} -P -m settler_pipeline"


def dagster_command(data_dir: Path, dagster_home: Path | None) -> str:
    """The command that opens the Dagster UI on ``data_dir`` from any directory: the source tree's
    ``make dagster`` when Settler runs from one, else ``dagster dev`` on the installed code location."""
    tree = Path(__file__).resolve().parents[2]
    if (tree / "Makefile").is_file() and (tree / "workspace.yaml").is_file():
        return f"make -C {shlex.quote(str(tree))} dagster DATA_DIR={shlex.quote(str(data_dir))}"
    dagster = Path(sys.executable).parent / "dagster"
    dagster_home = dagster_home or data_dir / ".dagster"
    return (
        f"DAGSTER_HOME={shlex.quote(str(dagster_home))} SETTLER_DATA_DIR={shlex.quote(str(data_dir))} "
        f"{shlex.quote(str(dagster)) if dagster.is_file() else 'dagster'} dev -m dagster_project.definitions"
    )
