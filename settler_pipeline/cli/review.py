"""`settler review ...`: list a run's open items and decide them (every decision is an event).

Every id `review list` prints is accepted as printed by the commands that decide it, and each command
takes several ids at once (one batch of events: all are decided, or none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from settler_pipeline.cli.options import DataDirOption, JsonOption, UserOption, existing_data
from settler_pipeline.cli.output import Lines, command, console, emit_json, emit_table
from settler_pipeline.cli.runs import print_outcome

app = typer.Typer(help="List and decide a run's open exceptions.", no_args_is_help=True)
RunArg = Annotated[str, typer.Argument(help="Run id, or a unique prefix of it (see `settler runs`).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")]
KINDS = ("proposed", "unmatched", "ambiguous", "duplicate", "quarantined")


def _record(record: dict[str, Any]) -> str:
    if record.get("amount") is None:
        return str(record["id"])
    text = f"{record['id']}  {record['date']}  {record['amount']} {record['currency']}"
    if record.get("reference"):
        text += f"  ref {record['reference']}"
    if record.get("description"):
        text += f"  “{str(record['description'])[:40]}”"
    return text


def _detail(item: dict[str, Any]) -> str:
    kind = item["kind"]
    if kind == "proposed":
        confidence = item.get("confidence")
        shown = "?" if confidence is None else f"{confidence:.2f}"
        days = item.get("date_difference_days")
        apart = "the same day" if days == 0 else f"{days} day{'' if days in (1, -1) else 's'} apart"
        return (
            f"rule {item.get('rule')}, confidence {shown}, "
            f"difference {item.get('amount_difference')} {item.get('currency') or ''}, {apart}"
        )
    if kind in ("unmatched", "ambiguous"):
        closest = item.get("closest")
        if closest:
            amount = f"{closest['amount']} {closest.get('currency') or ''}".rstrip()
            difference = closest.get("amount_difference")
            # no difference across two currencies
            apart = "" if difference is None else f" (difference {difference})"
            return f"closest {closest['id']} {amount}{apart}: {closest['rejection']}"
        if item.get("candidates"):
            return "candidates " + ", ".join(item["candidates"][:4])
        return ""
    if kind == "duplicate":
        first = item.get("duplicate_of") or {}
        line, repeated = item.get("line_number"), first.get("line_number")
        return f"line {line} repeats line {repeated} ({first.get('record_id')})"
    if kind == "quarantined":
        return f"line {item.get('line_number')}: {str(item.get('raw') or '')[:60]}"
    return ""


@app.command("list")
@command
def list_open(
    run_id: RunArg,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Only proposed, unmatched, ambiguous, duplicate or quarantined."),
    ] = None,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """The run's open items: proposed matches, unmatched records, duplicates, quarantined rows, each with
    its records (date, amount, reference, description) and why it is open."""
    from settler_pipeline.errors import ValidationError
    from settler_pipeline.session import Settler

    if kind is not None and kind not in KINDS:
        raise ValidationError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    from settler_pipeline.application.review import not_reviewable

    with Settler(data_dir, user=user, read_only=True) as app_:
        state = app_.state(run_id)
        short = app_.short_id(state.reconciliation_id or run_id)
        refused = not_reviewable(state, short, process_gone=app_.catalog.process_gone(state))
        if refused is not None:
            raise refused
        state, items = app_.review_items(run_id)
    if kind is not None:
        items = [i for i in items if i["kind"] == kind]
    if json:
        emit_json(items)
        return
    rows = [
        {
            "id": item["id"],
            "kind": item["kind"],
            "reason": item["reason"],
            "source": Lines(_record(r) for r in item["source"]),
            "target": Lines(_record(r) for r in item["target"]),
            "detail": _detail(item),
        }
        for item in items
    ]
    emit_table(f"open items of run {short} ({state.status}): {len(rows)}", rows)
    if not rows:
        console.print("nothing to review")
    else:
        console.print(
            f"decide them with `settler review confirm|reject|dismiss {short} ID...` or "
            f"`settler review match {short} --source ID --target ID`",
            markup=False,
            soft_wrap=True,
        )


MatchIds = Annotated[list[str], typer.Argument(help="Proposed matches, as `review list` prints them.")]


def _decide(
    action: str, label: str, run_id: str, user: str | None, data_dir: Path, json: bool, **fields: Any
) -> None:
    """Take the review decision ``action`` on ``run_id`` as ``user`` and print its outcome."""
    from settler_pipeline.session import Settler

    with Settler(existing_data(data_dir), user=user) as app_:
        outcome = app_.review(action, run_id, **fields)
    print_outcome(outcome, json, label)


@app.command("confirm")
@command
def confirm(
    run_id: RunArg,
    match_ids: MatchIds,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Confirm proposed matches."""
    _decide("confirm", "confirm", run_id, user, data_dir, json, match_ids=match_ids)


@app.command("reject")
@command
def reject(
    run_id: RunArg,
    match_ids: MatchIds,
    reason: ReasonOption,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Reject proposed matches; their records become open exceptions again."""
    _decide("reject", "reject", run_id, user, data_dir, json, match_ids=match_ids, reason=reason)


@app.command("match")
@command
def match(
    run_id: RunArg,
    source: Annotated[list[str], typer.Option("--source", help="Source record id (repeat for many).")],
    target: Annotated[list[str], typer.Option("--target", help="Target record id (repeat for many).")],
    note: Annotated[str, typer.Option("--note", help="Why they belong together.")] = "",
    accept_difference: Annotated[
        bool,
        typer.Option(
            "--accept-difference",
            help="Match although the amounts differ by more than the job's tolerance (needs --note).",
        ),
    ] = False,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Match unmatched records by hand: one currency, amounts within the job's tolerance (or
    --accept-difference with a --note); the match records the difference."""
    _decide(
        "match",
        "manual match",
        run_id,
        user,
        data_dir,
        json,
        source_ids=source,
        target_ids=target,
        note=note,
        accept_difference=accept_difference,
    )


@app.command("dismiss")
@command
def dismiss(
    run_id: RunArg,
    exception_ids: Annotated[
        list[str], typer.Argument(help="Open items, as `settler review list` prints them.")
    ],
    reason: ReasonOption,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Close open items without a match."""
    _decide("dismiss", "dismiss", run_id, user, data_dir, json, exception_ids=exception_ids, reason=reason)
