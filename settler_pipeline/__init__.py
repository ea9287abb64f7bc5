"""Settler: reconciliation of financial records as an event-sourced batch pipeline."""

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.errors import (
    ConcurrencyError,
    DuplicateEventError,
    InvalidIdError,
    SettlerError,
    UserError,
)

__all__ = [
    "ConcurrencyError",
    "DuplicateEventError",
    "EventEnvelope",
    "EventMetadata",
    "InvalidIdError",
    "SettlerError",
    "UserError",
]
