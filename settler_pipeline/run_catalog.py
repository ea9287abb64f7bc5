"""The runs a user may see, found in the log: full ids from unique prefixes (as git does), the
shortest prefixes that tell runs apart, and the run listing with each run's status and open items."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any

import polars as pl

from settler_pipeline.application.access import AccessControl
from settler_pipeline.application.lease import LeaseState
from settler_pipeline.application.service import ReconciliationService
from settler_pipeline.domain.reconciliation import RUNNING, STARTED, ReconciliationState
from settler_pipeline.errors import NotFoundError, ValidationError
from settler_pipeline.ids import UUID_PATTERN
from settler_pipeline.store.event_store import EventStore

_PREFIX_RE = re.compile(r"^[0-9a-f][0-9a-f-]{3,35}$")
RUNS_HINT = "list runs with `settler runs`"


class RunCatalog:
    """The runs ``user`` may see: those of the tenants ``visible()`` returns (which raises when the
    user sees none)."""

    def __init__(
        self,
        store: EventStore,
        service: ReconciliationService,
        access: AccessControl,
        user: str,
        visible: Callable[[], list[str]],
    ) -> None:
        self.store, self.service, self.access, self.user = store, service, access, user
        self._visible = visible

    def _started(self) -> pl.DataFrame:
        """The start events of the runs this user may see (one row per run), newest first."""
        from settler_pipeline.domain import events as e

        visible = self._visible()
        return (
            self.store.read(event_types=[e.RECONCILIATION_STARTED])
            .filter(pl.col("tenant_id").is_in(visible))
            .select("aggregate_id", "tenant_id", "timestamp", "data", "global_position")
            .collect()
            .unique("aggregate_id", keep="first", maintain_order=True)
            .sort("global_position", descending=True)
        )

    def resolve(self, ref: str) -> str:
        """The full id of the run ``ref`` names: a full id, or (as git does) a unique prefix of the id
        of a run this user may see. Ambiguous prefixes name the runs they match."""
        if not isinstance(ref, str):
            raise ValidationError(f"run id must be a string, got {ref!r}")
        text = ref.strip().lower()
        if re.fullmatch(UUID_PATTERN, text):
            return text
        if not _PREFIX_RE.fullmatch(text):
            raise ValidationError(
                f"run id must be a UUID or a unique prefix of one (4 or more hex digits), got {ref!r}",
                hint=f"ids look like 0192f0c4-5d3e-7a10-8b2c-1d2e3f405162; {RUNS_HINT}",
            )
        found = [run for run in self.run_ids() if run.startswith(text)]
        if not found:
            raise NotFoundError(
                f"no run visible to {self.user!r} has an id starting with {ref!r}", hint=RUNS_HINT
            )
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise ValidationError(
                f"run id prefix {ref!r} is ambiguous: it matches {len(found)} runs ({shown})",
                hint="give more characters of the id",
            )
        return found[0]

    def run_ids(self) -> list[str]:
        """Ids of every run this user may see, newest first."""
        ids: list[str] = self._started()["aggregate_id"].to_list()
        return ids

    def runs(
        self,
        *,
        tenant: str | None = None,
        job: str | None = None,
        status: str | None = None,
        day: date | None = None,
        limit: int | None = 50,
    ) -> list[dict[str, Any]]:
        """The runs this user may see, newest first: id, tenant (id and name), job, days, status,
        attempt, start time, match rate (null unless completed with in-range records), open items
        (the one definition of open exceptions: :attr:`ReconciliationState.open_exceptions`, what
        ``review list`` shows), ``process_gone`` (see :meth:`process_gone`) and ``supersedes`` (the runs
        it replaces once it completes; superseded then if it did). Filters: tenant name
        or id, job name, status, a day the run covers."""
        from settler_pipeline.domain import events as e

        started = self._started()
        names = {t.tenant_id: t.name for t in self.access.tenants()}
        if tenant is not None:
            wanted = self.access.resolve_tenant(tenant, visible_to=self.user).tenant_id
            started = started.filter(pl.col("tenant_id") == wanted)
        rows: list[dict[str, Any]] = []
        for run_id, tenant_id, at, data in started.select(
            "aggregate_id", "tenant_id", "timestamp", "data"
        ).iter_rows():
            start = json.loads(data)
            period = start["date_range"]
            if job is not None and start["job_id"] != job:
                continue
            if day is not None and not (period["start"] <= day.isoformat() <= period["end"]):
                continue
            state = self.service.load(run_id)
            if status is not None and state.status != status:
                continue
            rows.append(
                {
                    "reconciliation_id": run_id,
                    "tenant_id": tenant_id,
                    "tenant": names.get(tenant_id, tenant_id),
                    "job_id": start["job_id"],
                    "period_start": period["start"],
                    "period_end": period["end"],
                    "status": state.status,
                    "attempt": state.attempt,
                    "started_at": at,
                    "match_rate": None,
                    "matched": state.counts.matched,
                    "open_exceptions": len(state.open_exceptions),
                    "open_proposals": len(state.open_proposals),
                    "process_gone": self.process_gone(state),
                    "supersedes": list(state.supersedes),
                }
            )
            if limit is not None and len(rows) >= limit:
                break
        completed = self.store.read(event_types=[e.RECONCILIATION_COMPLETED]).filter(
            pl.col("aggregate_id").is_in([r["reconciliation_id"] for r in rows])
        )
        rates: dict[tuple[str, int], Any] = {}
        for run_id, data in completed.select("aggregate_id", "data").collect().iter_rows():
            body = json.loads(data)
            rates[(run_id, body["attempt"])] = body["summary"].get("match_rate")
        for row in rows:
            if row["status"] == "completed":
                row["match_rate"] = rates.get((row["reconciliation_id"], row["attempt"]))
        return rows

    def process_gone(self, state: ReconciliationState) -> bool:
        """Whether ``state`` is started or running while the process executing it is gone (its lease
        expired): the log cannot say so until a command marks it abandoned. Writes nothing."""
        leases = self.service.leases
        return (
            state.reconciliation_id is not None
            and state.status in (STARTED, RUNNING)
            and leases is not None
            and leases.state(state.reconciliation_id) == LeaseState.EXPIRED
        )


def _common_length(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def short_ids(ids: list[str], minimum: int = 8) -> dict[str, str]:
    """The shortest prefix (at least ``minimum`` characters) that tells each id apart from the others,
    as git abbreviates commits; every command taking a run id accepts it."""
    out: dict[str, str] = {}
    ordered = sorted(set(ids))
    for i, run_id in enumerate(ordered):
        neighbours = [ordered[j] for j in (i - 1, i + 1) if 0 <= j < len(ordered)]
        common = max((_common_length(run_id, n) for n in neighbours), default=0)
        length = max(minimum, common + 1)
        if length < len(run_id) and run_id[length - 1] == "-":
            length += 1  # never end a prefix on a hyphen
        out[run_id] = run_id[:length]
    return out
