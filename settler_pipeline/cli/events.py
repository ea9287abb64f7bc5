"""`settler events`: read the log (by stream, correlation id, type, or from a position)."""

from __future__ import annotations

import json as json_lib
from pathlib import Path
from typing import Annotated

import typer

from settler_pipeline.cli.options import DataDirOption, JsonOption, UserOption
from settler_pipeline.cli.output import console, emit_json, emit_table, utc_text


def events_command(
    stream: Annotated[
        str | None, typer.Option("--stream", help="A run's id (or a unique prefix): its events in order.")
    ] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="One flow's events.")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only this event type (repeatable).")
    ] = None,
    from_position: Annotated[
        int, typer.Option("--from-position", help="Only events after this position.", min=0)
    ] = 0,
    limit: Annotated[int, typer.Option("--limit", help="At most this many events.", min=1)] = 50,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Events the user may see, in log order (under --json, each event's data is a JSON object)."""
    from settler_pipeline.session import Settler

    with Settler(data_dir, user=user, read_only=True) as app:
        frame = app.events(
            stream=stream,
            correlation_id=correlation_id,
            event_types=event_type,
            from_position=from_position,
            limit=limit,
        )
        names = app.tenant_names()
    shown = [
        "global_position",
        "event_type",
        "aggregate_id",
        "aggregate_version",
        "timestamp",
        "causation_id",
    ]
    if json:
        # the whole envelope: who acted, for which tenant, in which flow (what --correlation-id filters on)
        envelope = ["event_id", "tenant_id", "user_id", "correlation_id", *shown, "data"]
        rows = frame.select(envelope).to_dicts()
        for row in rows:
            row["tenant"] = names.get(row["tenant_id"])
            row["data"] = json_lib.loads(row["data"])
        emit_json(rows)
        return
    # for people: whole ids on one line (the aggregate's is what --stream takes), the time to the
    # second in UTC, the start of the data; the causation and the rest of the envelope are in --json
    rows = [
        {
            "position": row["global_position"],
            "event_type": row["event_type"],
            "aggregate_id": row["aggregate_id"],
            "version": row["aggregate_version"],
            "time (UTC)": utc_text(row["timestamp"]),
            "data": row["data"][:80],
        }
        for row in frame.select(*shown, "data").to_dicts()
    ]
    emit_table(f"events ({len(rows)})", rows)
    if not rows:
        console.print("no events match (try a lower --from-position or fewer filters)")
