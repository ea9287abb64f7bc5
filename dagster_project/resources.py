"""Dagster resources: configured handles on the library's stores (no logic of their own)."""

import os
from pathlib import Path

import dagster as dg

from settler_pipeline.session import Settler
from settler_pipeline.store.event_store import EventStore

EMBEDDED_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def default_data_dir() -> Path:
    """The data directory: ``SETTLER_DATA_DIR`` if set, else the repository's embedded ``data/``."""
    return Path(os.environ.get("SETTLER_DATA_DIR") or EMBEDDED_DATA_DIR)


class EventStoreResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The event log of a data directory, and the application on top of it for commands."""

    data_dir: str = ""  # empty: SETTLER_DATA_DIR, else the embedded data/
    user: str = "dagster"  # the acting user of scheduled runs (needs operator in the run's tenant)

    def path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    def open(self, *, read_only: bool = False) -> EventStore:
        """A store handle; close it (or use ``with``) when done. ``read_only`` handles take no write
        lock (sensors and observations never wait for, or slow down, writers)."""
        return EventStore.open(self.path(), read_only=read_only)

    def app(self) -> Settler:
        """The application (commands and reads) acting as :attr:`user`."""
        return Settler(self.path(), user=self.user)


class ReadModelsResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Where read models are published (Parquet files plus the analyst DuckDB of views)."""

    data_dir: str = ""  # empty: SETTLER_DATA_DIR, else the embedded data/

    def path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()
