"""`settler review ...`: list open exceptions and resolve them (every decision is an event)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from settler_pipeline.cli.options import DataDirOption, JsonOption, UserOption
from settler_pipeline.cli.output import command, console, emit_json, emit_table
from settler_pipeline.cli.runs import _print_outcome
from settler_pipeline.session import Settler

app = typer.Typer(help="List and resolve a run's exceptions.", no_args_is_help=True)
RunArg = Annotated[str, typer.Argument(help="Reconciliation id.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")]


@app.command("list")
@command
def list_open(
    run_id: RunArg,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """The run's open exceptions and proposed matches."""
    with Settler(data_dir, user=user, read_only=True) as app_:
        state = app_.state(run_id)
        closest = _closest_candidates(app_, run_id)
    rows = [
        {
            "exception_id": exception_id,
            "kind": exception_id.split(":", 1)[0],
            "reason": reason,
            "records": ", ".join(
                [
                    *state.open_proposals[exception_id.split(":", 1)[1]][0],
                    "→",
                    *state.open_proposals[exception_id.split(":", 1)[1]][1],
                ]
            )
            if exception_id.startswith("proposed:")
            else exception_id.split(":", 2)[-1],
            "closest": closest.get(exception_id, ""),
        }
        for exception_id, reason in sorted(state.open_exceptions.items())
    ]
    if json:
        emit_json(rows)
    else:
        emit_table(f"open items of run {run_id} ({state.status})", rows)
        if not rows:
            console.print("nothing to review")


def _closest_candidates(app_: Settler, run_id: str) -> dict[str, str]:
    """``unmatched:<side>:<id>`` -> "<closest id> <amount> (<rejection>)" from the latest attempt's
    ``RecordUnmatched`` events (empty where an event names no closest candidate)."""
    from settler_pipeline.domain import events as e
    from settler_pipeline.projections.batch import decode_payloads

    fields = {
        "attempt": pl.Int64(),
        "side": pl.String(),
        "record_id": pl.String(),
        "closest_id": pl.String(),
        "closest_amount": pl.Int64(),
        "closest_rejection": pl.String(),
    }
    unmatched = decode_payloads(app_.events(stream=run_id, event_types=[e.RECORD_UNMATCHED]), fields)
    if unmatched.height == 0:
        return {}
    latest = unmatched.filter(pl.col("attempt") == pl.col("attempt").max()).drop_nulls("closest_id")
    described = latest.select(
        pl.concat_str(pl.lit("unmatched:"), "side", pl.lit(":"), "record_id").alias("key"),
        pl.concat_str(
            "closest_id",
            pl.lit(" "),
            pl.col("closest_amount").cast(pl.String),
            pl.lit(" ("),
            "closest_rejection",
            pl.lit(")"),
        ).alias("text"),
    )
    return dict(zip(described["key"].to_list(), described["text"].to_list(), strict=True))


@app.command("confirm")
@command
def confirm(
    run_id: RunArg,
    match_id: Annotated[str, typer.Argument(help="Proposed match id.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Confirm a proposed match."""
    with Settler(data_dir, user=user) as app_:
        _print_outcome(app_.review("confirm", run_id, match_id=match_id), json, "confirm")


@app.command("reject")
@command
def reject(
    run_id: RunArg,
    match_id: Annotated[str, typer.Argument(help="Proposed match id.")],
    reason: ReasonOption,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Reject a proposed match; its records become open exceptions again."""
    with Settler(data_dir, user=user) as app_:
        _print_outcome(app_.review("reject", run_id, match_id=match_id, reason=reason), json, "reject")


@app.command("match")
@command
def match(
    run_id: RunArg,
    source: Annotated[list[str], typer.Option("--source", help="Source record id (repeat for many).")],
    target: Annotated[list[str], typer.Option("--target", help="Target record id (repeat for many).")],
    note: Annotated[str, typer.Option("--note", help="Why they belong together.")] = "",
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Match unmatched records by hand."""
    with Settler(data_dir, user=user) as app_:
        outcome = app_.review("match", run_id, source_ids=source, target_ids=target, note=note)
    _print_outcome(outcome, json, "manual match")


@app.command("dismiss")
@command
def dismiss(
    run_id: RunArg,
    exception_id: Annotated[str, typer.Argument(help="Exception id, as `settler review list` shows.")],
    reason: ReasonOption,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Close an exception without a match."""
    with Settler(data_dir, user=user) as app_:
        outcome = app_.review("dismiss", run_id, exception_id=exception_id, reason=reason)
    _print_outcome(outcome, json, "dismiss")
