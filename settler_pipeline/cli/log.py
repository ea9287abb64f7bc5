"""`settler log ...`: maintenance of the event log.

Every command here needs a global admin (see ``AccessControl.require_global_admin``): the log holds
every tenant's events, so even its read-only figures (event counts by type, run ids in a problem) are
not any one tenant's to see, and repair, compaction and reindexing rewrite the system of record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from settler_pipeline.cli.options import (
    DataDirOption,
    JsonOption,
    UserOption,
    existing_data,
    global_admin_access,
)
from settler_pipeline.cli.output import (
    EXIT_DAMAGED_DATA,
    EXIT_USER_ERROR,
    command,
    console,
    emit_json,
    emit_mapping,
    warn,
)

app = typer.Typer(help="Verify, repair, compact, reindex and describe the event log.", no_args_is_help=True)


@app.command("verify")
@command
def verify_command(
    user: UserOption = None, data_dir: DataDirOption = Path("data"), json: JsonOption = False
) -> None:
    """Check checksums, the write-ahead records, the recorded head, gap-free positions, stream versions
    and index agreement; opens nothing for writing. Exits 3 (damaged or missing files) naming what is
    damaged and what was lost."""
    global_admin_access(data_dir, user, "`settler log verify`")
    from settler_pipeline.store import maintenance
    from settler_pipeline.store.event_store import EventStore

    with EventStore.open(data_dir, read_only=True) as store:
        report = maintenance.verify(store)
    if json:
        emit_json(report.to_dict())
    else:
        emit_mapping(
            "log verify",
            {k: v for k, v in report.to_dict().items() if k != "problems"},
        )
        for problem in report.problems:
            console.print(Text.assemble(("problem: ", "red"), problem))
        for first, last in report.lost:
            console.print(f"[yellow]recorded loss:[/] positions {first}..{last} (by `settler log repair`)")
        if report.ok:
            console.print("[green]the log is consistent[/]")
        else:
            console.print("[dim]hint:[/] `settler log repair` keeps every intact event and reports the rest")
    if not report.ok:
        raise typer.Exit(EXIT_DAMAGED_DATA)


@app.command("repair")
@command
def repair_command(
    accept_loss: Annotated[
        bool,
        typer.Option(
            "--accept-loss",
            help="Without a backup: record the positions of missing segment files as lost (never reused).",
        ),
    ] = False,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Repair what can be repaired (see docs/architecture.md): rebuild an old commit point from the
    segment files, keep the intact records of a damaged write-ahead file and record the lost positions
    (never reused), move unknown files to quarantine, rebuild the index and stream copies. Missing
    segment files are reported (restore them from a backup and repair again), or with --accept-loss
    recorded as lost. Exits 1 when something could not be repaired, naming it."""
    global_admin_access(data_dir, user, "`settler log repair`")
    from settler_pipeline.store import maintenance

    store, done = maintenance.open_for_repair(existing_data(data_dir))
    with store:
        report = maintenance.repair(store, accept_loss=accept_loss, done=done)
    if json:
        emit_json(report.to_dict())
    else:
        for action in report.actions:
            console.print(Text.assemble(("done: ", "green"), action), highlight=False)
        for item in report.unresolved:
            console.print(Text.assemble(("not repaired: ", "red"), item), highlight=False)
        if not report.actions and not report.unresolved:
            console.print("nothing to repair")
    if not report.ok:
        raise typer.Exit(EXIT_USER_ERROR)


@app.command("publish")
@command
def publish_command(
    user: UserOption = None, data_dir: DataDirOption = Path("data"), json: JsonOption = False
) -> None:
    """Publish every committed event into the Delta Lake table other engines read (the write-ahead
    tail moves into segments; one Delta commit). Prints the published position and the table's URI."""
    global_admin_access(data_dir, user, "`settler log publish`")
    from settler_pipeline.store.event_store import EventStore

    with EventStore.open(existing_data(data_dir)) as store:
        published = store.publish()
        body = {
            "published_position": published,
            "head_position": store.head_position,
            "table_uri": store.table_uri,
        }
    if json:
        emit_json(body)
    else:
        emit_mapping("log publish", body)


@app.command("compact")
@command
def compact_command(
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
    target_rows: Annotated[
        int, typer.Option(help="Largest segment to build, in events.", min=1000)
    ] = 1_000_000,
) -> None:
    """Merge small segments (and the write-ahead tail) into larger ones; events and positions unchanged."""
    global_admin_access(data_dir, user, "`settler log compact`")
    from settler_pipeline.store import maintenance
    from settler_pipeline.store.event_store import EventStore

    with EventStore.open(existing_data(data_dir)) as store:
        report = maintenance.compact(store, target_rows=target_rows)
    if json:
        emit_json(report.to_dict())
    else:
        emit_mapping("log compact", {k: v for k, v in report.to_dict().items() if k != "retired"})


@app.command("reindex")
@command
def reindex_command(
    user: UserOption = None, data_dir: DataDirOption = Path("data"), json: JsonOption = False
) -> None:
    """Rebuild the DuckDB index from the segment files alone."""
    global_admin_access(data_dir, user, "`settler log reindex`")
    from settler_pipeline.store import maintenance
    from settler_pipeline.store.event_store import EventStore

    with EventStore.open(existing_data(data_dir), recover_index=False) as store:
        report = maintenance.reindex(store)
    if json:
        emit_json(report.to_dict())
    else:
        emit_mapping("log reindex", report.to_dict())


@app.command("stats")
@command
def stats_command(
    user: UserOption = None, data_dir: DataDirOption = Path("data"), json: JsonOption = False
) -> None:
    """Size and shape of the log. Committed segment files that are missing or not their recorded size
    are listed under ``damaged`` and exit 3 (``settler log verify`` checks everything)."""
    global_admin_access(data_dir, user, "`settler log stats`")
    from settler_pipeline.store import maintenance
    from settler_pipeline.store.event_store import EventStore

    with EventStore.open(data_dir, read_only=True) as store:
        stats = maintenance.stats(store)
    if json:
        emit_json(stats)
    else:
        emit_mapping("log stats", stats)
    if stats["damaged"]:
        warn(
            f"the log is damaged ({len(stats['damaged'])} problems); run `settler log verify` for the "
            "whole check and `settler log repair` to keep every intact event"
        )
        raise typer.Exit(EXIT_DAMAGED_DATA)
