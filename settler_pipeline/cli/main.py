"""The `settler` command line."""

from __future__ import annotations

import typer

from settler_pipeline.cli import demo, log

app = typer.Typer(
    name="settler",
    help="Settler: reconcile financial records with an auditable event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(log.app, name="log")
app.command("demo")(demo.demo_command)


def main() -> None:
    """Console-script entry point."""
    app()
