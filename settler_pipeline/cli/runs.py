"""`settler reconcile`, `retry`, `cancel`, `state`, `runs`: runs and their state.

Every command that takes a run id also takes a unique prefix of it, as git does with commits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from settler_pipeline.cli.options import (
    DataDirOption,
    JsonOption,
    TenantOption,
    UserOption,
    existing_data,
    parse_date,
    parse_time,
)
from settler_pipeline.cli.output import (
    EXIT_USER_ERROR,
    command,
    console,
    emit_json,
    emit_mapping,
    emit_table,
    err_console,
    progress_bar,
    utc_text,
    warn,
)
from settler_pipeline.domain.reconciliation.status import RECORDED
from settler_pipeline.errors import ValidationError

if TYPE_CHECKING:
    from settler_pipeline.application.outcome import RunOutcome

_GONE = "no live process"
_STATUSES = ", ".join(RECORDED)
RunArg = Annotated[str, typer.Argument(help="Run id, or a unique prefix of it (see `settler runs`).")]


def _status(row: dict[str, Any], short: dict[str, str]) -> str:
    """A run's status for people: with "no live process", or the runs it is to replace when it is
    started or running (they stay live until it completes)."""
    if row["process_gone"]:
        return f"{row['status']} ({_GONE})"
    if row["status"] in ("started", "running") and row["supersedes"]:
        replaced = ", ".join(short.get(r, r) for r in row["supersedes"])
        return f"{row['status']} (replaces {replaced} once completed)"
    return str(row["status"])


def format_rate(rate: float | None) -> str:
    """A match rate for people; an empty run (no in-range source records) has none."""
    return "empty run" if rate is None else f"{rate:.2%}"


def print_outcome(outcome: RunOutcome, json: bool, title: str) -> None:
    """What a command did to a run: JSON, or a table for people."""
    if json:
        emit_json(outcome.to_dict())
        return
    head: dict[str, Any] = {
        "run": outcome.reconciliation_id,
        "status": outcome.status,
        "attempt": outcome.attempt,
        "events appended": outcome.events_appended,
    }
    if outcome.repeated_command:
        head["note"] = "this command was already handled; nothing new was written"
    if outcome.summary:
        s = outcome.summary
        head.update(
            {
                "source records": s["total_source_records"],
                "target records": s["total_target_records"],
                "matches (auto)": s["matched_count"],
                "match rate": format_rate(s["match_rate"]),
                "proposed for review": s["proposed_count"],
                "unmatched source / target": f"{s['unmatched_source_count']} / {s['unmatched_target_count']}",
                "duplicates": s["duplicate_count"],
                "quarantined rows": s["quarantined_count"],
                "duration": f"{s['duration_ms']} ms",
            }
        )
    for key, value in outcome.details.items():
        head[key.replace("_", " ")] = value
    if outcome.error:
        head["error"] = f"{outcome.error.get('type')}: {outcome.error.get('message')}"
        head["failed step"] = outcome.error.get("step")
    emit_mapping(title, head)
    for failure in outcome.publish_failures:
        warn(failure)


def reconcile_command(
    job_spec: Annotated[Path, typer.Argument(help="Job spec YAML file.", dir_okay=False)],
    date_from: Annotated[
        str | None,
        typer.Option("--from", help="First day (YYYY-MM-DD). Default: yesterday (UTC), announced first."),
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive. Default: --from.")] = None,
    tenant: TenantOption = None,
    user: UserOption = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Reconciliation id (UUID). Default: new.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Same key and parameters twice = the run happens once; other parameters = an error.",
        ),
    ] = None,
    supersede: Annotated[
        bool,
        typer.Option(
            "--supersede",
            help="Replace a live run of the same job, tenant and days: it is superseded when this run "
            "completes (if this run fails, it stays as it is).",
        ),
    ] = False,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Reconcile a job spec's source against its target over a date range and print a summary."""
    from settler_pipeline.session import Settler

    if date_from:
        start = parse_date(date_from, "--from")
    else:
        start = datetime.now(UTC).date() - timedelta(days=1)  # UTC days, like every time in Settler
        if not json:
            err_console.print(f"reconciling {start} (yesterday, UTC): pass --from to choose the day")
    end = parse_date(date_to, "--to") if date_to else start
    with Settler(data_dir, user=user) as app, progress_bar(json) as report:
        app.service.progress = report
        outcome = app.reconcile(
            job_spec,
            start=start,
            end=end,
            tenant=tenant,
            reconciliation_id=run_id,
            idempotency_key=idempotency_key,
            supersede=supersede,
        )
    print_outcome(outcome, json, "reconciliation")
    if outcome.status == "failed":
        if not json:
            err_console.print(f"hint: {failure_hint(outcome)}", markup=False)
        raise typer.Exit(EXIT_USER_ERROR)
    _refuse_cancelled(outcome, json)


def retry_command(
    run_id: RunArg,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Job spec to run with (default: the file the run was started from).",
            dir_okay=False,
        ),
    ] = None,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Run a failed or cancelled reconciliation again (a new attempt), reading its job spec file again."""
    from settler_pipeline.session import Settler

    with Settler(existing_data(data_dir), user=user) as app, progress_bar(json) as report:
        app.service.progress = report
        outcome = app.retry(run_id, spec_path=spec)
    print_outcome(outcome, json, "retry")
    if outcome.status == "failed":
        raise typer.Exit(EXIT_USER_ERROR)
    _refuse_cancelled(outcome, json)


def _refuse_cancelled(outcome: RunOutcome, json: bool) -> None:
    """Exit 1 when the run was cancelled (from another process, while this command ran it): its days
    are not reconciled, and a script or scheduler must not take the command for done."""
    if outcome.status != "cancelled":
        return
    if not json:
        run = outcome.reconciliation_id
        err_console.print(
            f"hint: run {run} was cancelled, so its days are not reconciled; `settler events --stream "
            f"{run} --type ReconciliationCancelled` shows who cancelled it and why, `settler retry {run}` "
            "runs it again",
            markup=False,
        )
    raise typer.Exit(EXIT_USER_ERROR)


def cancel_command(
    run_id: RunArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Cancel a reconciliation that has not finished."""
    from settler_pipeline.session import Settler

    with Settler(existing_data(data_dir), user=user) as app:
        outcome = app.cancel(run_id, reason)
    print_outcome(outcome, json, "cancel")


def state_command(
    run_id: RunArg,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Time (ISO, UTC) to look back to.")] = None,
    at_position: Annotated[
        int | None, typer.Option("--at-position", help="Log position to look back to.", min=0)
    ] = None,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """A run's state now, or as it stood at a time or log position (time travel)."""
    from settler_pipeline.session import Settler

    if as_of is not None and at_position is not None:
        raise ValidationError("give --as-of or --at-position, not both", hint="time travel takes one point")
    when = parse_time(as_of, "--as-of") if as_of else None
    with Settler(data_dir, user=user, read_only=True) as app:
        state = app.state(run_id, as_of=when, at_position=at_position)
        short = app.short_id(state.reconciliation_id or run_id)
        gone = when is None and at_position is None and app.catalog.process_gone(state)
    body = state.to_dict()
    body.pop("spec", None)
    body["open_exception_count"] = len(state.open_exceptions)
    body["process_gone"] = gone
    if json:
        emit_json(body)
        return
    exceptions = body.pop("open_exceptions")
    proposals = body.pop("open_proposals")
    del body["process_gone"]
    if gone:
        body["status"] = (
            f"{state.status} ({_GONE}; `settler retry {short}` marks it abandoned and runs it again)"
        )
    # for people: the days as the runs table shows them, and each count on its own line
    start, end = body.pop("date_range", None) or (None, None)
    counts = body.pop("counts", None) or {}
    shown = {key: value for key, value in body.items() if key != "open_exception_count"}
    shown["days"] = start if start == end else f"{start}..{end}"
    shown |= {f"{name.replace('_', ' ')}": value for name, value in counts.items()}
    shown["open exceptions"] = body["open_exception_count"]
    emit_mapping(f"run {state.reconciliation_id}", shown)
    console.print(
        f"open exceptions: {len(exceptions)} (of which {len(proposals)} proposed matches); "
        f"see `settler review list {short}`",
        markup=False,
    )


def runs_command(
    tenant: TenantOption = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job (the spec's name).")] = None,
    status: Annotated[str | None, typer.Option("--status", help=f"One of {_STATUSES}.")] = None,
    day: Annotated[str | None, typer.Option("--day", help="Only runs covering this day.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many runs.", min=1)] = 50,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """The runs you may see, newest first, with a short id every command accepts."""
    from settler_pipeline.session import Settler, short_ids

    if status is not None and status not in RECORDED:
        raise ValidationError(f"--status must be one of {_STATUSES}, got {status!r}")
    on = parse_date(day, "--day") if day else None
    with Settler(data_dir, user=user, read_only=True) as app:
        rows = app.runs(tenant=tenant, job=job, status=status, day=on, limit=limit)
        short = short_ids(app.run_ids())
    for row in rows:
        row["short_id"] = short[row["reconciliation_id"]]
    if json:
        emit_json(rows)
        return
    table = [
        {
            "run": r["short_id"],
            "tenant": r["tenant"],
            "job": r["job_id"],
            "days": r["period_start"]
            if r["period_start"] == r["period_end"]
            else f"{r['period_start']}..{r['period_end']}",
            "status": _status(r, short),
            "attempt": r["attempt"],
            "match rate": format_rate(r["match_rate"]) if r["status"] == "completed" else "",
            "open exceptions": r["open_exceptions"],
            "started (UTC)": utc_text(r["started_at"]),
        }
        for r in rows
    ]
    emit_table(f"runs ({len(rows)})", table)
    if any(r["process_gone"] for r in rows):
        console.print(
            f"{_GONE}: the run stopped without recording how it ended (killed, out of memory); "
            "`settler retry RUN` marks it abandoned and runs it again",
            markup=False,
        )
    if not rows:
        console.print("no runs match (start one with `settler reconcile JOB_SPEC --from DAY`)", markup=False)


def register(app: typer.Typer) -> None:
    """Add the run commands to the top-level app."""
    for name, fn in (
        ("runs", runs_command),
        ("reconcile", reconcile_command),
        ("retry", retry_command),
        ("cancel", cancel_command),
        ("state", state_command),
    ):
        app.command(name)(command(fn))


def failure_hint(outcome: RunOutcome) -> str:
    """How to fix what made the run of ``outcome`` fail: its error's own remedy where one is known."""
    retry = f"`settler retry {outcome.reconciliation_id}`"
    if (outcome.error or {}).get("type") == "InsufficientMemoryError":
        return (
            "give the run more memory (max_memory / SETTLER_MAX_MEMORY, or the container's limit), set a "
            f"smaller block_records in the job spec, or reconcile fewer days per run; then {retry}"
        )
    return f"fix the input or the job spec named above, then {retry} (it reads the job spec file again)"
