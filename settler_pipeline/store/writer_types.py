"""What an append returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppendResult:
    """Positions assigned to an appended batch, in the batch's order."""

    positions: list[int]
    duplicate: bool  # True when the whole batch was already in the log (an idempotent retry)
