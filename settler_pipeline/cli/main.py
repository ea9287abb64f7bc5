"""The `settler` command line.

Start-up time matters (``settler --help`` should answer at once), so this module and the command
modules import only Typer, Rich and the error types; the data stack (Polars, DuckDB, pyarrow, Dagster)
is imported inside the commands that use it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

try:  # Typer bundles its own copy of click; older releases used the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from settler_pipeline.cli import access, demo, events, log, readmodels, review, runs, sample
from settler_pipeline.cli.output import EXIT_USER_ERROR, command, report_error


class SettlerGroup(TyperGroup):
    """The top-level group: a usage error (unknown option, missing argument, bad value) is a user
    error like any other: exit 1, one line and a hint (JSON under ``--json``), never click's exit 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(
                args=argv,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except click_exceptions.NoArgsIsHelpError:
            code = EXIT_USER_ERROR  # the help was printed when the error was made
        except click_exceptions.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "settler"
            report_error(exc.format_message(), f"see `{where} --help`", "usage", as_json="--json" in argv)
            code = EXIT_USER_ERROR
        except typer.Abort:
            code = EXIT_USER_ERROR
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="settler",
    cls=SettlerGroup,
    help="Settler: reconcile financial records with an auditable event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: Typer's Rich help formatter imports a Markdown parser and Rich's traceback module,
    # a third of the start-up time of `settler --help`.
    rich_markup_mode=None,
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


def _configure_logging(ctx: typer.Context, level: str) -> str:
    from typer._click.core import ParameterSource

    from settler_pipeline.cli.output import LOG_LEVEL_CHOSEN
    from settler_pipeline.logs import configure, parse_level

    try:
        configure(parse_level(level))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # under --json a command keeps stderr for its one JSON error unless logs were asked for (output.py)
    ctx.meta[LOG_LEVEL_CHOSEN] = ctx.get_parameter_source("log_level") != ParameterSource.DEFAULT
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
