"""How an attempt ends, decided by the domain: its summary (and the one definition of the match
rate) when it completes, its failure event (and whether a retry may help) when it does not."""

from __future__ import annotations

from typing import Final

from settler_pipeline.domain import events as e
from settler_pipeline.domain.reconciliation.state import ReconciliationState
from settler_pipeline.errors import NotFoundError, SettlerError, UserError

MAX_ERROR_MESSAGE: Final = 2000
"""Characters of an error message kept in ``ReconciliationFailed`` (the rest is summarised)."""
INTERRUPTED: Final = "the process was interrupted (a termination signal or Ctrl-C) while the run executed"


def match_rate(own_matched: int, own_proposed: int, own_unmatched: int) -> float | None:
    """The match rate (the one definition, see docs/read-models.md): the share of the run's own
    source records (in range, not duplicates) that ended in an auto-confirmed match, given how many
    of them were matched, proposed and left unmatched (margin records in a match are counterparts,
    not counted); an empty run (no such records) has none, rather than a 0 % that would drag down
    every average."""
    eligible = own_matched + own_proposed + own_unmatched
    return round(own_matched / eligible, 6) if eligible else None


def decide_completion(state: ReconciliationState, summary: e.Summary) -> e.NewEvent:
    """The event that closes a successful attempt."""
    return e.NewEvent(
        e.RECONCILIATION_COMPLETED, e.ReconciliationCompleted(attempt=state.attempt, summary=summary)
    )


def is_retryable(error: BaseException, step: str) -> bool:
    """Whether running the attempt again may end differently: a missing input may appear, an
    interruption or an internal error may not recur; a mistake in the spec or its data, or the
    matcher refusing its input, will."""
    if isinstance(error, UserError):
        return isinstance(error, NotFoundError)
    return not (isinstance(error, SettlerError) and step == "match")


def decide_failure(state: ReconciliationState, error: BaseException, *, step: str) -> e.NewEvent:
    """The event that records how an attempt failed: the error's type and message (an interruption
    said as such; a long message cut at :data:`MAX_ERROR_MESSAGE` characters), the step it failed
    in, and :func:`is_retryable`."""
    message = str(error) or type(error).__name__
    if isinstance(error, SystemExit | KeyboardInterrupt):
        message = INTERRUPTED
    if len(message) > MAX_ERROR_MESSAGE:
        message = f"{message[:MAX_ERROR_MESSAGE]}... ({len(message)} characters)"
    payload = e.ReconciliationFailed(
        attempt=state.attempt,
        error=e.ErrorData(type=type(error).__name__, message=message),
        step=step,
        retryable=is_retryable(error, step),
    )
    return e.NewEvent(e.RECONCILIATION_FAILED, payload)
