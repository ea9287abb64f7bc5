"""The composition root: the one place that builds Settler's application from its settings.

The CLI, the Python API (:class:`~settler_pipeline.session.Settler`), the Dagster code location (through
its resources, which open a ``Settler``) and the demo all get their objects here, so a concrete
adapter is chosen once: the Parquet/DuckDB event store of the data directory, the access file, the
input roots and run leases from the settings, and the bus with its subscriber (the run journal). Fast
tests build a :class:`ReconciliationService` on the in-memory log directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.application import journal
from settler_pipeline.application.access import AccessControl, os_login
from settler_pipeline.application.bus import EventBus
from settler_pipeline.application.lease import RunLeases
from settler_pipeline.application.service import ReconciliationService
from settler_pipeline.application.start_lock import StartLocks
from settler_pipeline.settings import Settings, load_settings
from settler_pipeline.store.event_store import EventStore


@dataclass
class Application:
    """Everything a command or a query needs, wired together for one acting user."""

    settings: Settings
    data_dir: Path
    login: str
    user: str
    access: AccessControl
    store: EventStore
    bus: EventBus
    service: ReconciliationService

    def close(self) -> None:
        """Release the event log (its files and locks)."""
        self.store.close()


def bootstrap(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    user: str | None = None,
    settings: Settings | None = None,
    read_only: bool = False,
) -> Application:
    """Build the application for ``data_dir`` (default: the settings') acting as ``user`` (default: the
    ``user`` setting, else the operating-system login, which must be allowed to impersonate anyone
    else). ``read_only`` opens the log without a lock and writes nothing; ``event_log`` replaces the
    data directory's log (the caller then owns it). Raises before anything is opened for writing when
    the login may not act as ``user``."""
    settings = settings if settings is not None else load_settings(data_dir=data_dir)
    root = Path(data_dir) if data_dir is not None else settings.data_dir
    access = AccessControl(root)
    login = os_login()
    acting = access.identify(user if user is not None else settings.user, login=login)
    store = EventStore.open(root, read_only=read_only)
    bus = EventBus()
    journal.subscribe(bus)
    service = ReconciliationService(
        store,
        access,
        bus,
        roots=InputRoots(settings.allowed_input_roots, data_dir=root),
        leases=RunLeases(root / "leases", settings.run_lease_seconds),
        start_locks=StartLocks(root / "locks"),
        max_memory=settings.max_memory,
        work_dir=root / "work",
    )
    return Application(settings, root, login, acting, access, store, bus, service)
