"""Dagster resources: configured handles on the library's stores."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from settler_pipeline.store.event_store import EventStore


def default_data_dir() -> str:
    """The data directory: ``SETTLER_DATA_DIR`` if set, else the embedded ``data/``."""
    return os.environ.get("SETTLER_DATA_DIR", str(Path(__file__).resolve().parent.parent / "data"))


class EventStoreResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The event log of a data directory."""

    data_dir: str = ""  # empty: SETTLER_DATA_DIR, else the embedded data/

    def resolved_dir(self) -> Path:
        return Path(self.data_dir or default_data_dir())

    def open(self) -> EventStore:
        return EventStore.open(self.resolved_dir())
