"""Dagster resources: configured handles on the library's stores (no logic of their own)."""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from settler_pipeline.alerts import AlertHook, AlertRecorder, log_hook, webhook_hook
from settler_pipeline.session import Settler
from settler_pipeline.settings import load_settings
from settler_pipeline.store.event_store import EventStore

EMBEDDED_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def default_data_dir() -> Path:
    """The data directory: ``SETTLER_DATA_DIR`` if set, else the repository's embedded ``data/``."""
    return Path(os.environ.get("SETTLER_DATA_DIR") or EMBEDDED_DATA_DIR)


class EventStoreResource(dg.ConfigurableResource[Any]):
    """The event log of a data directory, and the application on top of it for commands."""

    data_dir: str = ""  # empty: SETTLER_DATA_DIR, else the embedded data/
    # The identity scheduled work acts as; empty: the `service_user` setting (SETTLER_SERVICE_USER,
    # settler.toml, default "dagster"). It needs a role in each tenant like anyone (`make demo` grants it).
    user: str = ""

    def path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    def acting_user(self) -> str:
        return self.user or load_settings(data_dir=self.path()).service_user

    def open(self, *, read_only: bool = False) -> EventStore:
        """A store handle; close it (or use ``with``) when done. ``read_only`` handles take no write
        lock (sensors and observations never wait for, or slow down, writers)."""
        return EventStore.open(self.path(), read_only=read_only)

    def app(self) -> Settler:
        """The application (commands and reads) acting as :meth:`acting_user`."""
        return Settler(self.path(), user=self.acting_user())


class ReadModelsResource(dg.ConfigurableResource[Any]):
    """Where read models are published (Parquet files plus the analyst DuckDB of views)."""

    data_dir: str = ""  # empty: SETTLER_DATA_DIR, else the embedded data/

    def path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()


class AlertsResource(dg.ConfigurableResource[Any]):
    """Where failure alerts go: a log line and ``<data dir>/alerts/<run id>.json`` always, and a POST to
    ``webhook_url`` when set (``SETTLER_ALERT_WEBHOOK``)."""

    data_dir: str = ""  # empty: SETTLER_DATA_DIR, else the embedded data/
    webhook_url: str = ""

    def recorder(self) -> AlertRecorder:
        root = Path(self.data_dir) if self.data_dir else default_data_dir()
        hooks: list[AlertHook] = [log_hook]
        url = self.webhook_url or os.environ.get("SETTLER_ALERT_WEBHOOK", "")
        if url:
            hooks.append(webhook_hook(url))
        return AlertRecorder(root / "alerts", hooks)
