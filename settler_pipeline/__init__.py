"""Settler: reconciliation of financial records as an event-sourced batch pipeline.

The package root is lazy (PEP 562): ``import settler_pipeline.domain`` or ``settler --help`` must not
pay for DuckDB, PyArrow, the store and the application. A public name is imported the first time it is
used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
    from settler_pipeline.errors import (
        ConcurrencyError,
        DuplicateEventError,
        InvalidIdError,
        SettlerError,
        UserError,
    )
    from settler_pipeline.session import Settler, open
    from settler_pipeline.store.event_store import EventStore

# public name -> module that defines it
_EXPORTS = {
    "ConcurrencyError": "settler_pipeline.errors",
    "DuplicateEventError": "settler_pipeline.errors",
    "InvalidIdError": "settler_pipeline.errors",
    "SettlerError": "settler_pipeline.errors",
    "UserError": "settler_pipeline.errors",
    "EventEnvelope": "settler_pipeline.domain.envelope",
    "EventMetadata": "settler_pipeline.domain.envelope",
    "EventStore": "settler_pipeline.store.event_store",
    "Settler": "settler_pipeline.session",
    "open": "settler_pipeline.session",
}

__all__ = [
    "ConcurrencyError",
    "DuplicateEventError",
    "EventEnvelope",
    "EventMetadata",
    "EventStore",
    "InvalidIdError",
    "Settler",
    "SettlerError",
    "UserError",
    "__version__",
    "open",
]


def _version() -> str:
    # importlib.metadata costs ~0.1 s on a cold start: looked up only when asked for
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("settler-pipeline")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = _version()
        return globals()[name]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'settler_pipeline' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
