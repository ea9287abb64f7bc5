"""`settler project`, `settler snapshot`, `settler stats`, `settler sql`: the read side."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from settler_pipeline.cli.options import DataDirOption, JsonOption, UserOption, global_admin_access
from settler_pipeline.cli.output import console, emit_json, emit_mapping, emit_table, progress_bar


def project_command(
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Recompute from position 0 (same rows).")
    ] = False,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Publish the log and bring every read model up to its head (incrementally, or from scratch with
    --rebuild). Global admins only: it writes every tenant's read models and prints their sizes."""
    from settler_pipeline import projections
    from settler_pipeline.store.event_store import EventStore

    access = global_admin_access(data_dir, user, "`settler project`")
    started = time.perf_counter()
    with EventStore.open(data_dir) as store, progress_bar(json) as report:
        if report is not None:
            report("rebuilding the read models" if rebuild else "updating the read models", 0, 1)
        names = access.tenant_names()
        result = (projections.rebuild if rebuild else projections.update)(store, data_dir, tenant_names=names)
    if json:
        emit_json(result)
    else:
        emit_table(f"read models ({time.perf_counter() - started:.1f} s)", result)


def snapshot_command(
    every: Annotated[int, typer.Option("--every", help="Snapshot a run every N events.", min=1)] = 100,
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Build aggregate snapshots for every run whose version crossed a multiple of --every. Global
    admins only: it writes every tenant's snapshots."""
    from settler_pipeline import projections
    from settler_pipeline.store.event_store import EventStore

    global_admin_access(data_dir, user, "`settler snapshot`")
    with EventStore.open(data_dir) as store, progress_bar(json) as report:
        if report is not None:
            report("building snapshots", 0, 1)
        built = projections.build_snapshots(store, every=every)
        total = store.snapshots.count()
    if json:
        emit_json({"snapshots_built": built, "snapshots_total": total})
    else:
        console.print(f"{built} snapshots built, {total} in total")


def stats_command(
    user: UserOption = None, data_dir: DataDirOption = Path("data"), json: JsonOption = False
) -> None:
    """Monitoring figures: event store size and shape, projection lag per read model, snapshots, and the
    operational metrics (append rate, lag, snapshot frequency, store size, query time). Global admins
    only: the figures cover every tenant."""
    from settler_pipeline import projections
    from settler_pipeline.metrics import operational_metrics
    from settler_pipeline.store import maintenance
    from settler_pipeline.store.event_store import EventStore

    global_admin_access(data_dir, user, "`settler stats`")
    with EventStore.open(data_dir, read_only=True) as store:
        log = maintenance.stats(store)
        lag = projections.status(store, data_dir)
        snapshots = store.snapshots.count()
        figures = operational_metrics(store, data_dir)
    body = {"event_store": log, "read_models": lag, "snapshots": snapshots, "metrics": figures}
    if json:
        emit_json(body)
        return
    emit_mapping("event store", {k: v for k, v in log.items() if k != "events_by_type"})
    emit_table("read models", lag)
    console.print(f"snapshots: {snapshots}")
    emit_mapping("metrics", figures)


def sql_command(
    query: Annotated[
        str, typer.Argument(help='SQL over the read models, e.g. "SELECT * FROM reconciliation_summary".')
    ],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Query the read models (only the tenants you hold a role in)."""
    from settler_pipeline.session import Settler

    with Settler(data_dir, user=user, read_only=True) as app:
        frame = app.sql(query)
    if json:
        emit_json(frame.to_dicts())
    else:
        emit_table(f"{frame.height} rows", frame.head(200).to_dicts(), frame.columns)
