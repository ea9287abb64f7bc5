"""How the CLI talks to people and scripts: JSON on request, tables otherwise, one-line errors.

The error contract: a user's mistake (bad input, a usage error, a missing permission) exits 1 with one
line saying what was wrong and a hint line saying how to fix it; exit 2 is kept for bugs. Under
``--json`` an error is one JSON object on stderr, ``{"error": ..., "hint": ..., "code": ...}``
(stdout stays for results, so a script parses stdout on exit 0 and stderr otherwise). User text is
never interpreted as Rich markup, and control characters in it (escape sequences, carriage returns,
bidirectional overrides) are shown as escapes, never sent to the terminal (JSON escapes them itself).
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from settler_pipeline.errors import CorruptionError, FieldError, SettlerError, UserError
from settler_pipeline.printable import printable, terminal_safe


class _PrintableConsole(Console):
    """A console that never writes a control character it did not make itself: every text segment is
    escaped (see :func:`terminal_safe`) on its way out, so user data printed through any message, table or
    progress line cannot reach the terminal raw. Line breaks of the layout stay, and Rich's own styles
    and cursor moves are not text segments; tables escape their cells before layout (:func:`_cell`),
    which also escapes a line break inside a value."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:
                lines = segment.text.split("\n")
                yield Segment("\n".join(terminal_safe(line) for line in lines), segment.style)


# Piped output (CI logs, scripts) gets a fixed, wide layout instead of rich's 80-column default.
console = _PrintableConsole(highlight=False, width=None if sys.stdout.isatty() else 140)
err_console = _PrintableConsole(stderr=True, highlight=False, soft_wrap=True)

ID_COLUMNS = frozenset({"id", "run", "exception_id", "reconciliation_id", "aggregate_id"})
SHORT_WORD = 24  # the widest cell of a column kept on one line without being an id column
EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 2
EXIT_DAMAGED_DATA = 3  # files of the data directory are damaged or missing: not a bug, not a mistake


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def to_json(payload: Any) -> str:
    """``payload`` as JSON text: dates and times in ISO form, decimals as strings, durations in
    seconds, bytes in hex, anything else as its text."""
    return json.dumps(payload, default=_default, indent=2, sort_keys=False)


def emit_json(payload: Any) -> None:
    """Print ``payload`` as JSON on stdout (for scripts)."""
    sys.stdout.write(to_json(payload) + "\n")


class Lines(tuple[str, ...]):
    """A table cell of several values, one per line (each escaped on its own, see :func:`_cell`)."""

    __slots__ = ()


def emit_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as a table for people (cells are shown as written, never as markup, control
    characters escaped; a :class:`Lines` cell shows one value per line)."""
    table = Table(title=Text(title), title_justify="left")
    cols = columns or (list(rows[0]) if rows else [])
    by_column = [[_cell(row.get(col)) for row in rows] for col in cols]
    for col, cells in zip(cols, by_column, strict=True):
        widest = max((len(cell) for cell in cells), default=0)
        # never cut with an ellipsis, and ids on one line: every id in a table is copyable as printed;
        # a column of short single words (a status, a reason code, a date) stays on one line too, so
        # the wrapping falls on the columns of free text rather than splitting `missing_settlement`
        one_word = not any(any(c.isspace() for c in cell) for cell in cells)
        if col in ID_COLUMNS or (widest <= SHORT_WORD and one_word):
            table.add_column(Text(col), no_wrap=True, min_width=widest)
        else:
            table.add_column(Text(col), overflow="fold")
    for row_cells in zip(*by_column, strict=True):
        table.add_row(*(Text(cell) for cell in row_cells))
    console.print(table)


def emit_mapping(title: str, mapping: dict[str, Any]) -> None:
    """Print key/value pairs for people."""
    table = Table(title=Text(title), title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in mapping.items():
        table.add_row(Text(key), Text(_cell(value)))
    console.print(table)


def utc_text(value: datetime | str | None) -> str | None:
    """A time (or its ISO text) as ``2026-11-02 14:03:54`` in UTC, short enough for a table column
    to keep on one line (``--json`` keeps the ISO time); text that is not a time is shown as it is."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    """A cell's text: one line (a line break in a value is shown as ``\\x0a``) unless it is
    :class:`Lines`."""
    if value is None:
        return ""
    if isinstance(value, Lines):
        return "\n".join(_cell(line) for line in value)
    if isinstance(value, dict | list):
        return json.dumps(value, default=_default)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return printable(str(value))


def error_code(exc: BaseException) -> str:
    """A short, stable code for an error type: ``NotFoundError`` -> ``not_found``."""
    name = type(exc).__name__.removesuffix("Error") or "settler"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def report_error(message: str, hint: str | None, code: str, *, as_json: bool) -> None:
    """Print one error on stderr: a JSON object (on one line) under ``--json``, else an ``error:``
    line and a ``hint:`` line (user text shown verbatim)."""
    message = " ".join(message.split())
    hint = " ".join(hint.split()) if hint else None
    if as_json:
        sys.stderr.write(json.dumps({"error": message, "hint": hint, "code": code}) + "\n")
        return
    err_console.print(Text.assemble(("error: ", "bold red"), terminal_safe(message)))
    if hint:
        err_console.print(Text.assemble(("hint: ", "dim"), terminal_safe(hint)))


def fail(message: str, hint: str | None = None, *, as_json: bool = False, code: str = "user") -> NoReturn:
    """Stop with a user error: one line, a hint, exit code 1."""
    report_error(message, hint, code, as_json=as_json)
    raise typer.Exit(EXIT_USER_ERROR)


def warn(message: str) -> None:
    """A warning on stderr (user text shown verbatim, control characters escaped)."""
    err_console.print(Text.assemble(("warning: ", "yellow"), terminal_safe(message)))


@contextmanager
def user_errors(*, as_json: bool = False, data_dir: Path | None = None) -> Iterator[None]:
    """Turn library errors into the CLI's exit codes: 1 with a one-line reason for a user's mistake,
    3 for damaged or missing files of the data directory, 2 for anything else (with the error's type,
    no traceback unless SETTLER_DEBUG is set)."""
    try:
        yield
    except typer.Exit:
        raise
    except FieldError as exc:  # names the field: the running command's help documents it
        hint = f"{exc.hint} ({_help_hint()})" if exc.hint else _help_hint()
        fail(exc.message, hint, as_json=as_json, code="validation")  # the code scripts already know
    except UserError as exc:
        fail(exc.message, exc.hint or _help_hint(), as_json=as_json, code=error_code(exc))
    except CorruptionError as exc:
        report_error(exc.message, exc.hint, error_code(exc), as_json=as_json)
        raise typer.Exit(EXIT_DAMAGED_DATA) from exc
    except SettlerError as exc:
        _fail_if_disk(exc, as_json)
        report_error(exc.message, exc.hint, error_code(exc), as_json=as_json)
        raise typer.Exit(EXIT_INTERNAL_ERROR) from exc
    except OSError as exc:
        if exc.errno not in _NOT_WRITABLE:
            _fail_if_disk(exc, as_json)
            _internal(exc, as_json)
        fail(
            f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror),
            _NOT_WRITABLE[exc.errno],
            as_json=as_json,
            code=_code_of(exc.errno),
        )
    except KeyboardInterrupt:
        report_error("interrupted", None, "interrupted", as_json=as_json)
        raise typer.Exit(130) from None
    except Exception as exc:
        _fail_if_disk(exc, as_json, data_dir)
        _internal(exc, as_json)


# The machine's state, not a defect: a file the command must write is on a read-only mount or not this
# user's, the disk is full, or a path given names a file where a folder belongs. Reported like a user's
# mistake (exit 1) with what to do.
_READ_ONLY_COPY = "read commands (runs, state, events, sql, review list) also work on a read-only copy"
_NOT_WRITABLE = {
    errno.EROFS: f"this command writes to the data directory, which is read-only here; {_READ_ONLY_COPY}",
    errno.EACCES: f"give this user access to that file and run it again; {_READ_ONLY_COPY}",
    errno.EPERM: f"give this user access to that file and run it again; {_READ_ONLY_COPY}",
    errno.ENOSPC: "free some space on that disk and run the command again",
    errno.EDQUOT: "free some space (the user's disk quota is used up) and run the command again",
    errno.ENOTDIR: "a part of that path is a file where a folder is needed: name a folder instead",
    errno.EEXIST: "a file is in the way where a folder is needed: name another folder or move the file",
}


# How Polars, DuckDB and deltalake word an OSError they wrap in their own exception types (the errno
# is lost on the way; Rust's text adds "(os error 28)", DuckDB's names the file).
_DISK_WORDS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
}


def _code_of(number: int) -> str:
    return "not_writable" if number == errno.EROFS else "file_access"


def _disk_errno(exc: BaseException) -> int | None:
    """The errno of a full disk, a used-up quota or a read-only mount behind ``exc``: an OSError
    in its chain, or a library's error whose text says so."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return link.errno
        text = str(link)
        for words, number in _DISK_WORDS.items():
            if words in text:
                return number
        link = link.__cause__ or link.__context__
    return None


def _full(data_dir: Path | None) -> bool:
    """Whether the disk holding ``data_dir`` has (next to) no space left for this user."""
    if data_dir is None:
        return False
    try:
        st = os.statvfs(data_dir)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _FULL_BELOW


# Some writers lose even the words: Polars's Parquet writer reports a full disk met while writing the
# footer as "Invalid thrift: transport error". An error no other way explains, raised while the data
# directory's disk has less than this left, is taken for a full disk.
_FULL_BELOW = 1 << 20


def _fail_if_disk(exc: BaseException, as_json: bool, data_dir: Path | None = None) -> None:
    """Report ``exc`` as the machine's state (exit 1, see :data:`_NOT_WRITABLE`) when a full disk, a
    used-up quota or a read-only mount caused it, whichever library wrapped the OSError."""
    number = _disk_errno(exc)
    if number is None and _full(data_dir):
        number = errno.ENOSPC
    if number is None:
        return
    detail = " ".join(str(exc).split())[:300]
    fail(
        f"{os.strerror(number)} ({type(exc).__name__}: {detail})",
        _NOT_WRITABLE[number],
        as_json=as_json,
        code=_code_of(number),
    )


def _internal(exc: Exception, as_json: bool) -> NoReturn:
    if os.environ.get("SETTLER_DEBUG"):
        raise exc
    report_error(
        f"internal error: {type(exc).__name__}: {exc}",
        "set SETTLER_DEBUG=1 to see the traceback, and report it",
        "internal",
        as_json=as_json,
    )
    raise typer.Exit(EXIT_INTERNAL_ERROR) from exc


def _help_hint() -> str:
    """A hint for an error that came without one: the running command's help."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    where = ctx.command_path if ctx is not None else "settler"
    return f"see `{where} --help`"


def progress_shown(as_json: bool) -> bool:
    """Progress goes to stderr, and only to a person: not under --json, not when stderr is not a
    terminal (a pipe, a log file, a test)."""
    return not as_json and err_console.is_terminal


@contextmanager
def progress_bar(as_json: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on stderr for long work: yields ``report(description, done, total)``, or None
    when progress is not shown (see :func:`progress_shown`)."""
    if not progress_shown(as_json):
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def report(description: str, done: int, total: int) -> None:
            bar.update(task, description=description, completed=done, total=total)

        yield report


LOG_LEVEL_CHOSEN = "settler.log_level_chosen"  # the root context's meta: --log-level or its variable given


def logs_for_scripts() -> None:
    """Under ``--json`` stderr holds one JSON object when a command fails, nothing else: log lines are
    dropped, or written as JSON lines when ``--log-level`` (or ``SETTLER_LOG_LEVEL``) asked for them."""
    import logging

    from typer._click.globals import get_current_context

    from settler_pipeline.logs import ROOT, configure

    ctx = get_current_context(silent=True)
    chosen = ctx is not None and bool(ctx.find_root().meta.get(LOG_LEVEL_CHOSEN))
    configure(logging.getLogger(ROOT).level, json_lines=True, silent=not chosen)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator applying :func:`user_errors` to a CLI command (JSON errors when it got ``--json``, and
    no log lines in plain text then: :func:`logs_for_scripts`)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("json"))
        if as_json:
            logs_for_scripts()
        data_dir = kwargs.get("data_dir")
        with user_errors(as_json=as_json, data_dir=data_dir if isinstance(data_dir, Path) else None):
            return fn(*args, **kwargs)

    return wrapper
