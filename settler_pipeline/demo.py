"""The demo behind `make demo`: Settler end to end on a data directory, safe to run again.

1. tenants and users (``demo`` is admin and operator, ``analyst`` a viewer);
2. generated exports for each tenant (a processor export and a bank statement with the hard cases);
3. one reconciliation per tenant and day, plus one that fails on a missing input file and one that is
   cancelled before it runs; a few review decisions;
4. snapshots and read models materialized through the Dagster code location (a child process running
   ``python -m dagster_project.materialize``) into a persistent Dagster instance under
   ``<data dir>/.dagster`` (so ``dagster dev`` shows them);
5. a short report.

Every command carries an idempotency key, so a second demo run appends nothing new and reports the same
runs; the read models stay identical.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from settler_pipeline.errors import SettlerError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler
from settler_pipeline.settings import SETTINGS_FILE, load_settings

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
    example_position: int = 0  # the log position of the first run's third event (a time-travel example)


def run_demo(data_dir: Path, *, progress: Progress | None = None) -> DemoReport:
    """Run the whole demo on ``data_dir`` (see the module docstring) and return its report."""
    say = progress or (lambda _message: None)
    data_dir = data_dir.resolve()
    inputs = data_dir / "inputs"
    jobs_dir = data_dir / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    _allow_demo_inputs(data_dir)
    report = DemoReport(data_dir=data_dir)
    with Settler(data_dir, user=DEMO_USER) as app:
        say("tenants and users")
        service_user = load_settings(data_dir=data_dir).service_user
        for name, _, _ in TENANTS:
            tenant = app.access.create_tenant(name, admin=DEMO_USER)
            if app.access.role_of(ANALYST, tenant.tenant_id) is None:
                app.access.grant(ANALYST, tenant.tenant_id, "viewer", by=DEMO_USER)
            # Scheduled work (the Dagster code location) acts as the service identity: it runs and
            # reconciles, so it needs operator in each tenant, like a person would.
            if app.access.role_of(service_user, tenant.tenant_id) is None:
                app.access.grant(service_user, tenant.tenant_id, "operator", by=DEMO_USER)
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
            tenant_id = app.tenant(name).tenant_id
            write_scheduled_spec(spec, jobs_dir, tenant_id)
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
        short = app.short_id
        for row in report.runs:
            # counted after the review decisions, as `state` and the read models count them: the one
            # definition of open exceptions is what `review list` shows (see docs/read-models.md), and
            # a confirmed proposal is a match
            state = app.service.load(row["run"])
            row["exceptions"] = len(state.open_exceptions)
            if row["matched"] is not None:
                row["matched"] = state.counts.matched
            row["short"] = short(row["run"])
        first = app.store.stream_frame(report.runs[0]["run"], "reconciliation")
        report.example_position = int(first["global_position"][min(2, first.height - 1)])
    say("snapshots and read models through Dagster")
    report.dagster_home, report.checks_passed, report.checks_total = materialize(data_dir)
    from settler_pipeline import projections

    with Settler(data_dir, user=DEMO_USER) as app:
        report.read_models = projections.status(app.store, data_dir)
        open_items = projections.sql(data_dir, "SELECT count(*) AS n FROM reconciliation_exceptions")
        report.exceptions_open = int(open_items["n"][0])
    return report


MATERIALIZE_MODULE = "dagster_project.materialize"
"""The program that materializes through the Dagster code location (run as ``python -m``: the library
never imports the code location, which imports the library)."""


def materialize(data_dir: Path) -> tuple[Path, int, int]:
    """Materialize snapshots and read models and run their checks through the Dagster code location on
    ``data_dir``, in a child process recording into the instance at ``<data_dir>/.dagster`` (with the
    tenants as partitions of the reconciliation assets, and an observation of the event log). Dagster's
    own output goes to :func:`dagster_log` instead of the terminal. Returns that instance's path and the
    checks passed / run."""
    home = data_dir / ".dagster"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    result_file = home / "demo-materialize.json"
    result_file.unlink(missing_ok=True)
    # The child gets its instance and data directory in its own environment; this process's stays as is.
    # `python -m` puts the working directory first on the import path: a `dagster_project/` or
    # `settler_pipeline/` folder in the operator's directory would run instead of the installed code.
    # -P (and PYTHONSAFEPATH for any Python the child starts) leaves it out; installed packages import.
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SETTLER_DATA_DIR": str(data_dir),
        "PYTHONSAFEPATH": "1",
    }
    log = dagster_log(data_dir)
    with open(log, "a", encoding="utf-8") as sink:
        done = subprocess.run(
            [sys.executable, "-P", "-m", MATERIALIZE_MODULE, str(data_dir), str(result_file)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0 or not result_file.exists():
        raise SettlerError("materializing the read models failed", hint=f"see Dagster's log in {log}")
    result = json.loads(result_file.read_text())
    return home, int(result["checks_passed"]), int(result["checks_total"])


def dagster_log(data_dir: Path) -> Path:
    """Where the demo writes Dagster's own output (its DEBUG lines, warnings and banners)."""
    return data_dir / ".dagster" / "demo.log"


def _row(tenant: str, day: date, outcome: Any) -> dict[str, Any]:
    summary = outcome.summary or {}
    return {
        "tenant": tenant,
        "day": day.isoformat(),
        "run": outcome.reconciliation_id,
        "status": outcome.status,
        "match_rate": summary.get("match_rate"),
        "matched": summary.get("matched_count"),
        "exceptions": 0,  # open exceptions and matches are counted once the review decisions are taken
        "error": (outcome.error or {}).get("message"),
    }


def _allow_demo_inputs(data_dir: Path) -> None:
    """The demo's exports live in ``<data dir>/inputs/<tenant>``; a data directory's files are out of a
    job spec's reach unless the operator lists a sub-folder as an input root, so the demo does that (in
    the settings file, only when there is none yet), one folder per tenant: a tenant's runs read its
    own exports and no other tenant's. It acts as the user ``demo``, which the
    operating-system login may do because it owns the data directory's access file."""
    settings = data_dir / SETTINGS_FILE
    if not settings.exists():
        settings.write_text(
            "# written by `settler demo`: job specs may read the demo exports\n"
            'allowed_input_roots = ["inputs/{tenant}"]\n'
        )


def write_scheduled_spec(spec: Path, jobs_dir: Path, tenant_id: str) -> Path:
    """Copy ``spec`` into ``jobs_dir`` (the folder the Dagster code location schedules) naming its
    tenant (the code location then offers partitions of that tenant only), with its input paths
    relative to ``jobs_dir`` (``../inputs/<tenant>/...``: a spec's relative paths resolve against its
    own folder), so a copied or moved data directory's jobs read its own inputs. Returns the copy."""
    import yaml

    body = yaml.safe_load(spec.read_text())
    for side in ("source", "target"):
        found = (spec.parent / body[side]["path"]).resolve()
        body[side]["path"] = Path(os.path.relpath(found, jobs_dir.resolve())).as_posix()
    body = {"name": body.pop("name"), "tenant_id": tenant_id, **body}
    copy = jobs_dir / spec.name
    copy.write_text(yaml.safe_dump(body, sort_keys=False))
    return copy


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
    # Chosen by their records, not their match ids: match ids are named by the tenant's id, which is new
    # in every demo data directory, and the demo should take the same decision (with the same figures)
    # in each.
    proposals = sorted(state.open_proposals, key=lambda match_id: state.open_proposals[match_id])
    if proposals:
        with contextlib.suppress(SettlerError):
            app.review("confirm", run_id, match_id=proposals[0], idempotency_key="demo:confirm")
