"""One entry point for people: a data directory opened as a user, with every interface behind it.

``settler_pipeline.open(data_dir, user="alice")`` is what a notebook calls; the CLI uses the same
object. Reads are scoped to the tenants the user holds a role in. The acting user is the
operating-system login unless another user is asked for and the login may impersonate (see
:mod:`settler_pipeline.application.access`).
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.application.access import AccessControl, Tenant, os_login
from settler_pipeline.application.bus import EventBus
from settler_pipeline.application.lease import RunLeases
from settler_pipeline.application.service import ReconciliationService, RunOutcome
from settler_pipeline.domain import commands as c
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import NotFoundError, ValidationError
from settler_pipeline.ids import new_id, validate_uuid
from settler_pipeline.jobspec import JobSpec, load_job_spec
from settler_pipeline.settings import Settings, load_settings
from settler_pipeline.store.event_store import EventStore


def default_user() -> str:
    """The operating-system login of this process (the identity used when nobody else is asked for)."""
    return os_login()


class Settler:
    """A data directory opened by one user. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        user: str | None = None,
        settings: Settings | None = None,
        read_only: bool = False,
    ) -> None:
        """Open ``data_dir`` (default: the settings' data directory) acting as ``user`` (default:
        the ``user`` setting, else the operating-system login). Raises
        :class:`~settler_pipeline.errors.PermissionDeniedError` when the login may not act as that
        user, before anything is opened for writing. ``read_only=True`` opens the log for reads only:
        no lock, nothing written, and a directory without Settler data raises :class:`NotFoundError`
        instead of becoming a new, empty store."""
        self.settings = settings if settings is not None else load_settings(data_dir=data_dir)
        self.data_dir = Path(data_dir) if data_dir is not None else self.settings.data_dir
        self.access = AccessControl(self.data_dir)
        self.login = os_login()
        self.user = self.access.identify(user if user is not None else self.settings.user, login=self.login)
        self.store = EventStore.open(self.data_dir, read_only=read_only)
        self.bus = EventBus()
        self.service = ReconciliationService(
            self.store,
            self.access,
            self.bus,
            roots=InputRoots(self.settings.allowed_input_roots, data_dir=self.data_dir),
            leases=RunLeases(self.data_dir / "leases", self.settings.run_lease_seconds),
        )

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Settler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tenants ------------------------------------------------------------------------------

    def tenant(self, name_or_id: str | None = None, *, spec: JobSpec | None = None) -> Tenant:
        """The tenant to act in: the one named, else the job spec's, else the user's only tenant."""
        if name_or_id is None and spec is not None and spec.tenant_id:
            name_or_id = spec.tenant_id
        if name_or_id is not None:
            return self.access.resolve_tenant(name_or_id)
        mine = self.access.tenants_of(self.user)
        if len(mine) == 1:
            return self.access.resolve_tenant(mine[0])
        if not mine:
            raise NotFoundError(
                f"user {self.user!r} has no role in any tenant",
                hint="create one with `settler access create-tenant NAME`, or pass --user",
            )
        raise ValidationError(
            f"user {self.user!r} works in several tenants; say which one",
            hint="pass --tenant NAME",
        )

    def visible_tenants(self) -> list[str]:
        """Tenant ids this user may read."""
        return self.access.tenants_of(self.user)

    # -- commands -----------------------------------------------------------------------------

    def reconcile(
        self,
        spec_path: str | os.PathLike[str],
        *,
        start: date,
        end: date,
        tenant: str | None = None,
        reconciliation_id: str | None = None,
        idempotency_key: str | None = None,
        execute: bool = True,
        supersede: bool = False,
    ) -> RunOutcome:
        """Run a job spec over ``start..end`` (inclusive) as a new reconciliation (with
        ``execute=False``, only queue it: see :meth:`ReconciliationService.start`). A live run of the
        same job, tenant and days makes it fail unless ``supersede``: then that run is superseded."""
        spec = load_job_spec(Path(spec_path))
        target = self.tenant(tenant, spec=spec)
        cmd = c.StartReconciliation(
            reconciliation_id=reconciliation_id or new_id(),
            tenant_id=target.tenant_id,
            user_id=self.user,
            job_id=spec.name,
            source_adapter=spec.source.adapter,
            target_adapter=spec.target.adapter,
            date_range=c.DateRange(start=start, end=end),
            spec=spec.model_dump(mode="json"),
            spec_dir=str(spec.base_dir),
            idempotency_key=idempotency_key,
            supersede=supersede,
        )
        return self._published(self.service.start(cmd, execute=execute))

    def _published(self, outcome: RunOutcome) -> RunOutcome:
        """Commands end by publishing the log, so that every other engine reading the Delta table sees
        the run's or the review's events (see :mod:`settler_pipeline.store.table`)."""
        self.store.publish()
        return outcome

    def _run_tenant(self, reconciliation_id: str) -> str:
        state = self.service.load(validate_uuid("reconciliation_id", reconciliation_id))
        if state.tenant_id is None or state.tenant_id not in self.visible_tenants():
            raise NotFoundError(
                f"reconciliation {reconciliation_id} does not exist or is not visible to {self.user!r}",
                hint='list runs with `settler sql "SELECT * FROM reconciliation_summary"`',
            )
        return state.tenant_id

    def retry(self, reconciliation_id: str) -> RunOutcome:
        """Retry a failed or cancelled run."""
        tenant = self._run_tenant(reconciliation_id)
        cmd = c.RetryReconciliation(reconciliation_id=reconciliation_id, tenant_id=tenant, user_id=self.user)
        return self._published(self.service.retry(cmd))

    def cancel(self, reconciliation_id: str, reason: str) -> RunOutcome:
        """Cancel a run that has not finished."""
        tenant = self._run_tenant(reconciliation_id)
        return self._published(
            self.service.cancel(
                c.CancelReconciliation(
                    reconciliation_id=reconciliation_id, tenant_id=tenant, user_id=self.user, reason=reason
                )
            )
        )

    def review(self, action: str, reconciliation_id: str, **fields: Any) -> RunOutcome:
        """Resolve an exception: ``action`` is confirm, reject, match or dismiss."""
        tenant = self._run_tenant(reconciliation_id)
        common: dict[str, Any] = {
            "reconciliation_id": reconciliation_id,
            "tenant_id": tenant,
            "user_id": self.user,
        }
        if action == "confirm":
            return self._published(self.service.confirm(c.ConfirmMatch(**common, **fields)))
        if action == "reject":
            return self._published(self.service.reject(c.RejectMatch(**common, **fields)))
        if action == "match":
            return self._published(self.service.match_manually(c.MatchManually(**common, **fields)))
        if action == "dismiss":
            return self._published(self.service.dismiss(c.DismissException(**common, **fields)))
        raise ValidationError(
            f"unknown review action {action!r}", hint="use confirm, reject, match or dismiss"
        )

    # -- reads --------------------------------------------------------------------------------

    def state(
        self, reconciliation_id: str, *, as_of: datetime | None = None, at_position: int | None = None
    ) -> ReconciliationState:
        """A run's state now, or as it stood at a time or log position (time travel)."""
        return self.service.state(
            validate_uuid("reconciliation_id", reconciliation_id),
            user_id=self.user,
            as_of=as_of,
            as_of_position=at_position,
        )

    def events(
        self,
        *,
        stream: str | None = None,
        correlation_id: str | None = None,
        event_types: list[str] | None = None,
        from_position: int = 0,
        to_position: int | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """Events visible to the user, as a Polars frame in log order (``data`` as JSON text)."""
        visible = self.visible_tenants()
        if stream is not None:
            frame = self.store.stream_frame(validate_uuid("stream", stream), "reconciliation")
            frame = frame.filter(pl.col("global_position") > from_position)
        elif correlation_id is not None:
            frame = self.store.correlation_frame(correlation_id).filter(
                pl.col("global_position") > from_position
            )
        else:
            lazy = self.store.read(
                from_position=from_position, to_position=to_position, event_types=event_types
            )
            lazy = lazy.filter(pl.col("tenant_id").is_in(visible))
            frame = (lazy.head(limit) if limit else lazy).collect()
        if event_types is not None:
            frame = frame.filter(pl.col("event_type").is_in(event_types))
        if to_position is not None:
            frame = frame.filter(pl.col("global_position") <= to_position)
        frame = frame.filter(pl.col("tenant_id").is_in(visible))
        return frame.head(limit) if limit else frame

    def stream(self, reconciliation_id: str) -> pl.DataFrame:
        """One run's events in version order (if the user may see its tenant)."""
        return self.events(stream=reconciliation_id)

    def sql(self, query: str) -> pl.DataFrame:
        """SQL over the read models, only the user's tenants (see :mod:`settler_pipeline.query`)."""
        from settler_pipeline.query import scoped_sql

        return scoped_sql(self.data_dir, query, self.visible_tenants())

    def read_model(self, name: str) -> pl.DataFrame:
        """A read model's published rows, only the user's tenants."""
        from settler_pipeline import projections

        frame = projections.read_model(self.data_dir, name)
        if "tenant_id" in frame.columns:
            frame = frame.filter(pl.col("tenant_id").is_in(self.visible_tenants()))
        return frame


def open(data_dir: str | os.PathLike[str] | None = None, *, user: str | None = None) -> Settler:
    """Open a Settler data directory (default: ``SETTLER_DATA_DIR``, else ``data``) as ``user``
    (default: ``SETTLER_USER``, else the operating-system login; anyone else needs the impersonate
    right)."""
    return Settler(data_dir, user=user)
