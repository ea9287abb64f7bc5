"""The demo behind `make demo`: Settler end to end on a data directory, safe to run again.

1. tenants and users (``demo`` is admin and operator, ``analyst`` a viewer);
2. generated exports for each tenant (a processor export and a bank statement with the hard cases);
3. one reconciliation per tenant and day, plus one that fails on a missing input file and one that is
   cancelled before it runs; a few review decisions;
4. snapshots and read models materialized through the Dagster definitions, in process, into a
   persistent Dagster instance under ``<data dir>/.dagster`` (so ``dagster dev`` shows them);
5. a short report.

Every command carries an idempotency key, so a second demo run appends nothing new and reports the same
runs; the read models stay identical.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from settler_pipeline.errors import SettlerError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DEMO_USER = "demo"
ANALYST = "analyst"
TENANTS = (("acme", 3_000, 11), ("globex", 2_000, 12), ("initech", 1_200, 13))
FIRST_DAY = date(2026, 11, 2)
DAYS = 4

Progress = Callable[[str], None]


@dataclass
class DemoReport:
    """What the demo did, for printing."""

    data_dir: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    exceptions_open: int = 0
    events: int = 0
    read_models: list[dict[str, Any]] = field(default_factory=list)
    checks_passed: int = 0
    checks_total: int = 0
    dagster_home: Path | None = None


def run_demo(data_dir: Path, *, progress: Progress | None = None) -> DemoReport:
    """Run the whole demo on ``data_dir`` (see the module docstring) and return its report."""
    say = progress or (lambda _message: None)
    data_dir = data_dir.resolve()
    inputs = data_dir / "inputs"
    jobs_dir = data_dir / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    report = DemoReport(data_dir=data_dir)
    with Settler(data_dir, user=DEMO_USER) as app:
        say("tenants and users")
        for name, _, _ in TENANTS:
            tenant = app.access.create_tenant(name, admin=DEMO_USER)
            if app.access.role_of(ANALYST, tenant.tenant_id) is None:
                app.access.grant(ANALYST, tenant.tenant_id, "viewer", by=DEMO_USER)
        for name, records, seed in TENANTS:
            say(f"sample exports for {name}")
            spec, _ = write_sample_job(
                inputs / name,
                records=records,
                start=FIRST_DAY,
                days=DAYS + 1,
                seed=seed,
                name=f"{name}-stripe-bank",
            )
            (jobs_dir / spec.name).write_text(_with_absolute_paths(spec))
            for offset in range(DAYS):
                day = FIRST_DAY + timedelta(days=offset)
                say(f"reconcile {name} {day}")
                outcome = app.reconcile(
                    spec, start=day, end=day, tenant=name, idempotency_key=f"demo:{name}:{day}"
                )
                report.runs.append(_row(name, day, outcome))
        say("a run that fails on a missing file")
        broken = _broken_spec(inputs)
        failed = app.reconcile(
            broken, start=FIRST_DAY, end=FIRST_DAY, tenant="acme", idempotency_key="demo:broken"
        )
        report.runs.append(_row("acme", FIRST_DAY, failed))
        say("a run cancelled before it runs")
        # The day after the daily runs: a run of days already reconciled would need --supersede.
        queued = app.reconcile(
            inputs / "globex" / "globex-stripe-bank.yaml",
            start=FIRST_DAY + timedelta(days=DAYS),
            end=FIRST_DAY + timedelta(days=DAYS),
            tenant="globex",
            idempotency_key="demo:queued",
            execute=False,
        )
        if queued.status == "started":
            queued = app.cancel(queued.reconciliation_id, "the statement for that day is not final yet")
        report.runs.append(_row("globex", FIRST_DAY + timedelta(days=DAYS), queued))
        say("review decisions")
        _review(app, report.runs[0]["run"])
        report.events = app.store.head_position
    say("snapshots and read models through Dagster")
    report.dagster_home, report.checks_passed, report.checks_total = materialize(data_dir)
    from settler_pipeline import projections

    with Settler(data_dir, user=DEMO_USER) as app:
        report.read_models = projections.status(app.store, data_dir)
        open_items = projections.sql(data_dir, "SELECT count(*) AS n FROM reconciliation_exceptions")
        report.exceptions_open = int(open_items["n"][0])
    return report


def materialize(data_dir: Path) -> tuple[Path, int, int]:
    """Materialize every asset and run every check of the Dagster code location on ``data_dir``, in
    process, recording into the instance at ``<data_dir>/.dagster``. Returns that path and the checks
    passed / run."""
    import dagster as dg

    home = data_dir / ".dagster"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    previous = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "SETTLER_DATA_DIR")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["SETTLER_DATA_DIR"] = str(data_dir)
    try:
        from dagster_project.definitions import defs
        from dagster_project.resources import EventStoreResource, ReadModelsResource

        with dg.DagsterInstance.get() as instance:
            result = dg.materialize(
                [*(defs.assets or []), *(defs.asset_checks or [])],
                resources={
                    "event_store": EventStoreResource(data_dir=str(data_dir)),
                    "read_models": ReadModelsResource(data_dir=str(data_dir)),
                },
                instance=instance,
                raise_on_error=False,
            )
        if not result.success:
            raise SettlerError(
                "materializing the read models failed", hint="run with SETTLER_DEBUG=1 and see dagster's log"
            )
        evaluations = result.get_asset_check_evaluations()
        return home, sum(1 for ev in evaluations if ev.passed), len(evaluations)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _row(tenant: str, day: date, outcome: Any) -> dict[str, Any]:
    summary = outcome.summary or {}
    return {
        "tenant": tenant,
        "day": day.isoformat(),
        "run": outcome.reconciliation_id,
        "status": outcome.status,
        "match_rate": summary.get("match_rate"),
        "matched": summary.get("matched_count"),
        "exceptions": (summary.get("unmatched_source_count", 0) or 0)
        + (summary.get("unmatched_target_count", 0) or 0)
        + (summary.get("proposed_count", 0) or 0),
        "error": (outcome.error or {}).get("message"),
    }


def _with_absolute_paths(spec: Path) -> str:
    """The spec's text with its relative input paths made absolute (it is copied to jobs/)."""
    import yaml

    body = yaml.safe_load(spec.read_text())
    for side in ("source", "target"):
        body[side]["path"] = str((spec.parent / body[side]["path"]).resolve())
    return yaml.safe_dump(body, sort_keys=False)


def _broken_spec(inputs: Path) -> Path:
    """A job spec whose bank statement file does not exist (the run must fail, visibly)."""
    import yaml

    folder = inputs / "acme"
    body = yaml.safe_load((folder / "acme-stripe-bank.yaml").read_text())
    body["name"] = "acme-missing-statement"
    body["target"]["path"] = "statement-that-never-arrived.csv"
    path = folder / "acme-missing-statement.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _review(app: Settler, run_id: str) -> None:
    """Dismiss one exception and decide one proposal of ``run_id`` (once: the keys are stable, and a
    decision already taken by an earlier demo run is simply skipped)."""
    state = app.state(run_id)
    unmatched = sorted(k for k in state.open_exceptions if k.startswith("unmatched:target:"))
    if unmatched:
        with contextlib.suppress(SettlerError):
            app.review(
                "dismiss",
                run_id,
                exception_id=unmatched[0],
                reason="bank fee",
                idempotency_key="demo:dismiss",
            )
    proposals = sorted(state.open_proposals)
    if proposals:
        with contextlib.suppress(SettlerError):
            app.review("confirm", run_id, match_id=proposals[0], idempotency_key="demo:confirm")
