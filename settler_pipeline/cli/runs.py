"""`settler reconcile`, `settler retry`, `settler cancel`, `settler state`: runs and their state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from settler_pipeline.application.service import RunOutcome
from settler_pipeline.cli.options import (
    DataDirOption,
    JsonOption,
    TenantOption,
    UserOption,
    parse_date,
    parse_time,
)
from settler_pipeline.cli.output import (
    EXIT_USER_ERROR,
    command,
    console,
    emit_json,
    emit_mapping,
    err_console,
)
from settler_pipeline.errors import ValidationError
from settler_pipeline.session import Settler


def _print_outcome(outcome: RunOutcome, json: bool, title: str) -> None:
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
                "match rate": f"{s['match_rate']:.2%}",
                "proposed for review": s["proposed_count"],
                "unmatched source / target": f"{s['unmatched_source_count']} / {s['unmatched_target_count']}",
                "duplicates": s["duplicate_count"],
                "quarantined rows": s["quarantined_count"],
                "duration": f"{s['duration_ms']} ms",
            }
        )
    if outcome.error:
        head["error"] = f"{outcome.error.get('type')}: {outcome.error.get('message')}"
        head["failed step"] = outcome.error.get("step")
    emit_mapping(title, head)
    for failure in outcome.publish_failures:
        err_console.print(f"[yellow]warning:[/] {failure}")


def reconcile_command(
    job_spec: Annotated[Path, typer.Argument(help="Job spec YAML file.", dir_okay=False)],
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (YYYY-MM-DD). Default: yesterday.")
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive. Default: --from.")] = None,
    tenant: TenantOption = None,
    user: UserOption = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Reconciliation id (UUID). Default: new.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Same key twice = the run happens once.")
    ] = None,
    supersede: Annotated[
        bool,
        typer.Option(
            "--supersede", help="Replace a live run of the same job, tenant and days (it is superseded)."
        ),
    ] = False,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Reconcile a job spec's source against its target over a date range and print a summary."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)  # UTC days, like every time in Settler
    start = parse_date(date_from, "--from") if date_from else yesterday
    end = parse_date(date_to, "--to") if date_to else start
    with Settler(data_dir, user=user) as app:
        outcome = app.reconcile(
            job_spec,
            start=start,
            end=end,
            tenant=tenant,
            reconciliation_id=run_id,
            idempotency_key=idempotency_key,
            supersede=supersede,
        )
    _print_outcome(outcome, json, "reconciliation")
    if outcome.status == "failed":
        if not json:
            err_console.print(
                f"[dim]hint:[/] fix the input named above, then `settler retry {outcome.reconciliation_id}`"
            )
        raise typer.Exit(EXIT_USER_ERROR)


def retry_command(
    run_id: Annotated[str, typer.Argument(help="Reconciliation id.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Run a failed or cancelled reconciliation again (a new attempt)."""
    with Settler(data_dir, user=user) as app:
        outcome = app.retry(run_id)
    _print_outcome(outcome, json, "retry")
    if outcome.status == "failed":
        raise typer.Exit(EXIT_USER_ERROR)


def cancel_command(
    run_id: Annotated[str, typer.Argument(help="Reconciliation id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Cancel a reconciliation that has not finished."""
    with Settler(data_dir, user=user) as app:
        outcome = app.cancel(run_id, reason)
    _print_outcome(outcome, json, "cancel")


def state_command(
    run_id: Annotated[str, typer.Argument(help="Reconciliation id.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Time (ISO, UTC) to look back to.")] = None,
    at_position: Annotated[
        int | None, typer.Option("--at-position", help="Log position to look back to.", min=0)
    ] = None,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """A run's state now, or as it stood at a time or log position (time travel)."""
    if as_of is not None and at_position is not None:
        raise ValidationError("give --as-of or --at-position, not both")
    when = parse_time(as_of, "--as-of") if as_of else None
    with Settler(data_dir, user=user, read_only=True) as app:
        state = app.state(run_id, as_of=when, at_position=at_position)
    body = state.to_dict()
    body.pop("spec", None)
    if json:
        emit_json(body)
        return
    exceptions = body.pop("open_exceptions")
    proposals = body.pop("open_proposals")
    emit_mapping(f"run {run_id}", body)
    console.print(f"open exceptions: {len(exceptions)}, open proposals: {len(proposals)}")


def register(app: typer.Typer) -> None:
    """Add the run commands to the top-level app."""
    for name, fn in (
        ("reconcile", reconcile_command),
        ("retry", retry_command),
        ("cancel", cancel_command),
        ("state", state_command),
    ):
        app.command(name)(command(fn))
