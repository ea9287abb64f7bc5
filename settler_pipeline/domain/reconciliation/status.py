"""A run's status and the groups of statuses the rules speak of."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RunStatus(StrEnum):
    """Where a run is in its life: ``new → started → running → completed | failed | cancelled |
    abandoned``; a failed, cancelled or abandoned run can be retried (back to ``started``); a live run
    is ``superseded`` when a newer run of the same job, tenant and days replaces it. Members are
    strings, so they compare equal to (and serialise as) their values."""

    NEW = "new"
    STARTED = "started"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    ABANDONED = "abandoned"


NEW: Final = RunStatus.NEW
STARTED: Final = RunStatus.STARTED
RUNNING: Final = RunStatus.RUNNING
COMPLETED: Final = RunStatus.COMPLETED
FAILED: Final = RunStatus.FAILED
CANCELLED: Final = RunStatus.CANCELLED
SUPERSEDED: Final = RunStatus.SUPERSEDED
ABANDONED: Final = RunStatus.ABANDONED

RECORDED: Final = tuple(status for status in RunStatus if status != RunStatus.NEW)
"""Statuses a run in the log can have (``new`` is a run that does not exist yet)."""
FINISHED: Final = (COMPLETED, FAILED, CANCELLED, SUPERSEDED, ABANDONED)
"""Statuses after which the attempt does nothing more."""
RETRYABLE: Final = (FAILED, CANCELLED, ABANDONED)
"""Statuses a retry may start from."""
LIVE: Final = (STARTED, RUNNING, COMPLETED)
"""Statuses of a run that counts for its job, tenant and days (a second one needs ``supersede``)."""
