"""`settler demo`: see Settler work end to end on the embedded data directory."""

from __future__ import annotations

from pathlib import Path

from settler_pipeline.cli.options import DataDirOption
from settler_pipeline.cli.output import command, console, emit_mapping
from settler_pipeline.demo import run_store_demo


@command
def demo_command(data_dir: DataDirOption = Path("data")) -> None:
    """Append a realistic batch of reconciliation events to the log, read it back and print stats."""
    result = run_store_demo(data_dir)
    emit_mapping("demo", result)
    console.print(
        f"\nNext: [bold]settler log verify -d {data_dir}[/], [bold]settler log stats -d {data_dir} --json[/]"
    )
