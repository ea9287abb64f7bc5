"""Settler: reconciliation of financial records as an event-sourced batch pipeline."""

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
    "open",
]
