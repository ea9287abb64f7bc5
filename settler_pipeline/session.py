"""One entry point for people: a data directory opened as a user, with every interface behind it.

``settler_pipeline.open(data_dir, user="alice")`` is what a notebook calls; the CLI uses the same
object. Reads are scoped to the tenants the user holds a role in. The acting user is the
operating-system login unless another user is asked for and the login may impersonate (see
:mod:`settler_pipeline.application.access`).
"""

from __future__ import annotations

import difflib
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.adapters.confinement import InputRoots, inside
from settler_pipeline.application.access import Tenant, os_login
from settler_pipeline.application.outcome import RunOutcome
from settler_pipeline.bootstrap import bootstrap
from settler_pipeline.domain import commands as c
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.domain.reconciliation.status import RECORDED
from settler_pipeline.errors import NotFoundError, ValidationError
from settler_pipeline.ids import new_id
from settler_pipeline.jobspec import JobSpec, load_job_spec
from settler_pipeline.run_catalog import RUNS_HINT, RunCatalog, short_ids
from settler_pipeline.settings import Settings, load_settings
from settler_pipeline.store.event_store import require_log

__all__ = ["RUNS_HINT", "Settler", "default_user", "open", "short_ids"]

_MOST_ROWS = 2**32 - 1  # the most rows a Polars frame holds (its row indices are 32 bits)


def _check_limit(limit: object) -> None:
    """Refuse a ``limit`` that is not a whole number of at least 1 (0 or -1 would not mean "all")."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(
            f"limit must be a whole number of at least 1, got {limit!r}", hint="or None for all"
        )


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
        app = bootstrap(data_dir, user=user, settings=settings, read_only=read_only)
        self.settings, self.data_dir, self.login, self.user = app.settings, app.data_dir, app.login, app.user
        self.access, self.store, self.bus, self.service = app.access, app.store, app.bus, app.service

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Settler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tenants ------------------------------------------------------------------------------

    def tenant(self, name_or_id: str | None = None, *, spec: JobSpec | None = None) -> Tenant:
        """The tenant to act in: the one named, else the job spec's, else the user's only tenant. A
        spec that names its tenant (``tenant_id``) runs in that tenant only: a different one named is
        refused, so one tenant's job never reads its inputs into another tenant's runs."""
        if spec is not None and spec.tenant_id:
            owner = self.access.resolve_tenant(spec.tenant_id, visible_to=self.user)
            if name_or_id is not None:
                self._require_spec_tenant(spec, self.access.resolve_tenant(name_or_id, visible_to=self.user))
            return owner
        if name_or_id is not None:
            return self.access.resolve_tenant(name_or_id, visible_to=self.user)
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

    def _require_spec_tenant(self, spec: JobSpec, tenant: Tenant) -> None:
        """Refuse to run ``spec`` in ``tenant`` when the spec names another tenant (``tenant_id``)."""
        if not spec.tenant_id or spec.tenant_id == tenant.tenant_id:
            return
        owner = self.access.resolve_tenant(spec.tenant_id, visible_to=self.user)
        raise ValidationError(
            f"job {spec.name!r} belongs to tenant {owner.name!r} (its spec's tenant_id), not {tenant.name!r}",
            hint=f"run it in {owner.name!r}, or use a spec without tenant_id for a job every tenant runs",
        )

    def visible_tenants(self) -> list[str]:
        """Tenant ids this user may read."""
        return self.access.tenants_of(self.user)

    def require_visible_tenants(self) -> list[str]:
        """Tenant ids this user may read; a :class:`NotFoundError` with a hint when there are none (a
        read would otherwise come back empty without saying why)."""
        visible = self.visible_tenants()
        if not visible:
            raise NotFoundError(
                f"user {self.user!r} has no role in any tenant, so there is nothing to show",
                hint="pass --user (or set SETTLER_USER) to a user with a role; an admin grants one with "
                "`settler access grant USER TENANT viewer`",
            )
        return visible

    # -- runs ---------------------------------------------------------------------------------

    @property
    def catalog(self) -> RunCatalog:
        """The runs this user may see (lookups by id prefix, short ids, listings)."""
        return RunCatalog(self.store, self.service, self.access, self.user, self.require_visible_tenants)

    def resolve_run(self, ref: str) -> str:
        """The full id of the run ``ref`` names: see :meth:`RunCatalog.resolve`."""
        return self.catalog.resolve(ref)

    def run_ids(self) -> list[str]:
        """Ids of every run this user may see, newest first."""
        return self.catalog.run_ids()

    def short_id(self, reconciliation_id: str) -> str:
        """The shortest prefix of the run's id that no other visible run shares (at least 8
        characters), which every command taking a run id accepts."""
        return short_ids(self.run_ids()).get(reconciliation_id, reconciliation_id)

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        """The runs this user may see, newest first; ``filters`` (``tenant``, ``job``, ``status``,
        ``day``, ``limit``) and the columns as :meth:`RunCatalog.runs` says. An unknown ``status``
        or a ``limit`` under 1 is a :class:`ValidationError`, never an empty answer."""
        status = filters.get("status")
        if status is not None and status not in RECORDED:
            raise ValidationError(
                f"status must be one of {', '.join(RECORDED)}, got {status!r}",
                hint="a run's status is one of these words, as `settler runs` shows them",
            )
        _check_limit(filters.get("limit"))
        return self.catalog.runs(**filters)

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
        spec = self._load_spec(Path(spec_path))
        target = self.tenant(tenant, spec=spec)
        cmd = c.build(
            c.StartReconciliation,
            reconciliation_id=reconciliation_id or new_id(),
            tenant_id=target.tenant_id,
            user_id=self.user,
            job_id=spec.name,
            source_adapter=spec.source.adapter,
            target_adapter=spec.target.adapter,
            date_range=c.DateRange(start=start, end=end),
            spec=spec.model_dump(mode="json"),
            spec_dir=str(spec.base_dir),
            spec_path=str(spec.spec_path) if spec.spec_path else None,
            idempotency_key=idempotency_key,
            supersede=supersede,
        )
        return self._published(self.service.start(cmd, execute=execute))

    def _load_spec(self, path: Path) -> JobSpec:
        """The job spec at ``path``; its errors quote its contents only when it lies where this user's
        specs and inputs may (see :meth:`_may_show_spec`)."""
        return load_job_spec(path, show_contents=self._may_show_spec(path))

    def _may_show_spec(self, path: Path) -> bool:
        """Whether errors may quote the file at ``path``: it is read with the process's rights, which
        under a service account are more than the caller's, so a file anywhere else (a secret, another
        tenant's file, Settler's own) must not come back quoted as a job spec's bad values. Allowed: the
        job specs folder and where a spec of the user's tenants may read (with no root set, any folder
        outside the data directory: a spec may then read its own folder anyway)."""
        resolved = path.resolve()
        if inside(resolved, self.settings.job_specs_dir.resolve()):
            return True
        roots = InputRoots(self.settings.allowed_input_roots, data_dir=self.data_dir)
        names = self.access.tenant_names()
        for tenant in [None, *(names[t] for t in self.visible_tenants() if t in names)]:
            mine = roots if tenant is None else roots.for_tenant(tenant)
            if mine.permits(resolved, resolved.parent):
                return True
        return False

    def _published(self, outcome: RunOutcome) -> RunOutcome:
        """Commands end by publishing the log, so that every other engine reading the Delta table sees
        the run's or the review's events (see :mod:`settler_pipeline.store.table`)."""
        self.store.publish()
        return outcome

    def _run(self, ref: str) -> tuple[str, str]:
        """The run's full id and its tenant, if this user may see it."""
        reconciliation_id = self.resolve_run(ref)
        state = self.service.load(reconciliation_id)
        if state.tenant_id is None or state.tenant_id not in self.visible_tenants():
            raise NotFoundError(
                f"reconciliation {reconciliation_id} does not exist or is not visible to {self.user!r}",
                hint=RUNS_HINT,
            )
        return reconciliation_id, state.tenant_id

    def retry(self, reconciliation_id: str, *, spec_path: str | os.PathLike[str] | None = None) -> RunOutcome:
        """Retry a failed or cancelled run (``reconciliation_id`` may be a unique prefix), reading its
        job spec again: from ``spec_path`` if given, else from the file the run was started from (a fix
        to the spec takes effect). Without a file to read, the run's last spec is used, and the outcome
        says so in ``details["job_spec"]``."""
        reconciliation_id, tenant = self._run(reconciliation_id)
        state = self.service.load(reconciliation_id)
        path = Path(spec_path) if spec_path is not None else None
        recorded = state.spec.get("spec_path")
        if path is None and recorded and Path(recorded).is_file():
            path = Path(recorded)
        fields: dict[str, Any] = {}
        if path is not None:
            spec = self._load_spec(path)
            self._require_spec_tenant(spec, self.access.resolve_tenant(tenant))
            fields = {
                "spec": spec.model_dump(mode="json"),
                "spec_dir": str(spec.base_dir),
                "spec_path": str(spec.spec_path) if spec.spec_path else None,
            }
            before = state.spec.get("spec")
            changed = "changed since the last attempt" if fields["spec"] != before else "unchanged"
            note = f"read again from {path} ({changed})"
        else:
            note = "the spec the run last ran with (its file is not available; pass --spec FILE to change it)"
        cmd = c.build(
            c.RetryReconciliation,
            reconciliation_id=reconciliation_id,
            tenant_id=tenant,
            user_id=self.user,
            **fields,
        )
        outcome = self._published(self.service.retry(cmd))
        outcome.details["job_spec"] = note
        return outcome

    def cancel(self, reconciliation_id: str, reason: str) -> RunOutcome:
        """Cancel a run that has not finished."""
        reconciliation_id, tenant = self._run(reconciliation_id)
        cmd = c.build(
            c.CancelReconciliation,
            reconciliation_id=reconciliation_id,
            tenant_id=tenant,
            user_id=self.user,
            reason=reason,
        )
        return self._published(self.service.cancel(cmd))

    def review(self, action: str, reconciliation_id: str, **fields: Any) -> RunOutcome:
        """Resolve exceptions: ``action`` is confirm, reject (``match_ids``), match (``source_ids``,
        ``target_ids``, ``note``, ``accept_difference``) or dismiss (``exception_ids``). Every id may be
        given as ``review list`` prints it (``proposed:<match id>``, ``unmatched:<side>:<record id>``);
        several ids make one batch of events, all or none."""
        from settler_pipeline.application.review import as_printed

        reconciliation_id, tenant = self._run(reconciliation_id)
        common: dict[str, Any] = {
            "reconciliation_id": reconciliation_id,
            "tenant_id": tenant,
            "user_id": self.user,
        }
        fields = dict(fields)
        for key, prefix in (
            ("match_id", "proposed:"),
            ("match_ids", "proposed:"),
            ("source_ids", "unmatched:source:"),
            ("target_ids", "unmatched:target:"),
        ):
            if isinstance(fields.get(key), str):
                fields[key] = fields[key].removeprefix(prefix)
            elif isinstance(fields.get(key), list | tuple):
                fields[key] = [str(i).removeprefix(prefix) for i in fields[key]]
        fields = as_printed(self.state(reconciliation_id).open_exceptions, fields)
        if action == "confirm":
            return self._published(self.service.confirm(c.build(c.ConfirmMatch, **common, **fields)))
        if action == "reject":
            return self._published(self.service.reject(c.build(c.RejectMatch, **common, **fields)))
        if action == "match":
            return self._published(self.service.match_manually(c.build(c.MatchManually, **common, **fields)))
        if action == "dismiss":
            return self._published(self.service.dismiss(c.build(c.DismissException, **common, **fields)))
        raise ValidationError(
            f"unknown review action {action!r}", hint="use confirm, reject, match or dismiss"
        )

    # -- reads --------------------------------------------------------------------------------

    def review_items(self, reconciliation_id: str) -> tuple[ReconciliationState, list[dict[str, Any]]]:
        """The run's open items (its open exceptions, proposals included), each with its records as
        the run read them (amounts in major units), the rule, confidence and differences of a
        proposal, the closest candidate of an unmatched record, the line a duplicate repeats."""
        from settler_pipeline.application.review import RunDetails

        state = self.state(reconciliation_id)
        return state, RunDetails(self.store, state).items()

    def state(
        self, reconciliation_id: str, *, as_of: datetime | None = None, at_position: int | None = None
    ) -> ReconciliationState:
        """A run's state now, or as it stood at a time or log position (time travel);
        ``reconciliation_id`` may be a unique prefix. A position past the log's head is a
        :class:`ValidationError` (the log has not been there yet)."""
        if at_position is not None and at_position > (head := self.store.head_position):
            raise ValidationError(
                f"position {at_position} is past the log's head ({head})",
                hint="give a position up to the head (`settler log stats` shows it), or none for the run now",
            )
        return self.service.state(
            self.resolve_run(reconciliation_id),
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
        """Events visible to the user, as a Polars frame in log order (``data`` as JSON text).

        An unknown event type, a stream that does not exist (or is not visible) and a user who sees no
        tenant are errors with a hint, not an empty answer."""
        visible = self.require_visible_tenants()
        if event_types:
            _check_event_types(event_types)
        _check_limit(limit)
        if limit is not None:
            # Polars counts rows in 32 bits: a larger limit (`--limit 99999999999`) is no limit at all
            limit = min(limit, _MOST_ROWS)
        if stream is not None:
            run_id, _ = self._run(stream)
            frame = self.store.stream_frame(run_id, "reconciliation")
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
        """SQL over the read models, only the user's tenants (see :mod:`settler_pipeline.query`); a query
        running past the ``sql_timeout_seconds`` setting, or needing more than ``sql_memory_limit``, is
        stopped with a :class:`ValidationError`."""
        from settler_pipeline.query import scoped_sql

        return scoped_sql(
            self.data_dir,
            query,
            self.require_visible_tenants(),
            self.tenant_names(),
            timeout_seconds=self.settings.sql_timeout_seconds,
            memory_limit=int(self.settings.sql_memory_limit),
        )

    def read_model(self, name: str) -> pl.DataFrame:
        """A read model's published rows, only the user's tenants, with the analyst columns (tenant
        names, amounts in major units: see :func:`settler_pipeline.query.with_analyst_columns`)."""
        from settler_pipeline import projections
        from settler_pipeline.query import scoped_rows

        rows = scoped_rows(self.data_dir, name, self.visible_tenants(), self.tenant_names())
        return rows.sort(list(projections.model(name).key)).collect()

    def tenant_names(self) -> dict[str, str]:
        """Tenant id -> name, for the tenants this user may see."""
        visible = set(self.visible_tenants())
        return {t.tenant_id: t.name for t in self.access.tenants() if t.tenant_id in visible}


def _check_event_types(event_types: list[str]) -> None:
    from settler_pipeline.domain import events as e
    from settler_pipeline.domain.registry import default_registry

    for name in event_types:
        if not default_registry.is_registered(name):
            close = difflib.get_close_matches(name, list(e.PAYLOADS), n=1)
            raise ValidationError(
                f"unknown event type {name!r}",
                hint=f"did you mean {close[0]}?" if close else f"event types: {', '.join(e.PAYLOADS)}",
            )


def open(
    data_dir: str | os.PathLike[str] | None = None, *, user: str | None = None, read_only: bool | None = None
) -> Settler:
    """Open an existing Settler data directory (default: ``SETTLER_DATA_DIR``, else ``data``) as
    ``user`` (default: ``SETTLER_USER``, else the operating-system login; anyone else needs the
    impersonate right). A directory without Settler data raises :class:`NotFoundError` and nothing
    is created (a mistyped path must not become an empty store; :class:`Settler` creates one).
    ``read_only``: ``True`` for reads only (no lock, nothing written), ``False`` to write; by default,
    for reads only exactly when this process cannot write the log there (a read-only mount or copy)."""
    path = Path(data_dir) if data_dir is not None else load_settings().data_dir
    require_log(path)
    if read_only is None:
        log = path / "log"
        lock = log / "write.lock"
        read_only = not os.access(log, os.W_OK) or (lock.exists() and not os.access(lock, os.W_OK))
    return Settler(path, user=user, read_only=read_only)
