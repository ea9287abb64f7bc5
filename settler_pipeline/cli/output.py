"""How the CLI talks to people and scripts: JSON on request, tables otherwise, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from settler_pipeline.errors import SettlerError, UserError

# Piped output (CI logs, scripts) gets a fixed, wide layout instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 2


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(payload: Any) -> None:
    """Print ``payload`` as JSON on stdout (for scripts)."""
    sys.stdout.write(json.dumps(payload, default=_default, indent=2, sort_keys=False) + "\n")


def emit_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as a table for people."""
    table = Table(title=title, title_justify="left")
    cols = columns or (list(rows[0]) if rows else [])
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    console.print(table)


def emit_mapping(title: str, mapping: dict[str, Any]) -> None:
    """Print key/value pairs for people."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in mapping.items():
        table.add_row(key, _cell(value))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=_default)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Stop with a user error: one line, a hint, exit code 1."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(EXIT_USER_ERROR)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into the CLI's exit codes: 1 with a one-line reason for a user's mistake,
    2 for anything else (with the error's type, no traceback unless SETTLER_DEBUG is set)."""
    import os

    try:
        yield
    except typer.Exit:
        raise
    except UserError as exc:
        fail(exc.message, exc.hint)
    except SettlerError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {exc.hint}")
        raise typer.Exit(EXIT_INTERNAL_ERROR) from exc
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("SETTLER_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}")
        err_console.print("[dim]hint:[/] set SETTLER_DEBUG=1 to see the traceback, and report it")
        raise typer.Exit(EXIT_INTERNAL_ERROR) from exc


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator applying :func:`user_errors` to a CLI command."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper
