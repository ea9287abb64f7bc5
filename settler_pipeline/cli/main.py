"""The `settler` command line."""

from __future__ import annotations

import typer

from settler_pipeline.cli import access, demo, events, log, readmodels, review, runs, sample
from settler_pipeline.cli.output import command

app = typer.Typer(
    name="settler",
    help="Settler: reconcile financial records with an auditable event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
runs.register(app)
app.command("events")(command(events.events_command))
app.command("sample")(command(sample.sample_command))
app.command("project")(command(readmodels.project_command))
app.command("snapshot")(command(readmodels.snapshot_command))
app.command("stats")(command(readmodels.stats_command))
app.command("sql")(command(readmodels.sql_command))
app.add_typer(review.app, name="review")
app.add_typer(access.app, name="access")
app.add_typer(log.app, name="log")
app.command("demo")(demo.demo_command)


def _print_version(value: bool) -> None:
    if value:
        from settler_pipeline import __version__

        typer.echo(f"settler {__version__}")
        raise typer.Exit()


def _configure_logging(level: str) -> str:
    from settler_pipeline.logs import configure, parse_level

    try:
        configure(parse_level(level))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return level


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    log_level: str = typer.Option(
        "WARNING",
        "--log-level",
        envvar="SETTLER_LOG_LEVEL",
        callback=_configure_logging,
        help="Log to stderr from this level on: DEBUG, INFO, WARNING or ERROR.",
    ),
) -> None:
    """Settler: reconcile financial records with an auditable event log."""


def main() -> None:
    """Console-script entry point."""
    app()
