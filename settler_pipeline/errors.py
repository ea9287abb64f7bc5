"""The one exception tree of Settler.

Every error the library raises derives from :class:`SettlerError`. Errors a user can cause and fix
(bad input, missing file, missing permission, a conflicting write) derive from :class:`UserError` and
carry a ``hint`` saying how to fix it; the CLI prints those as one line and exits with code 1. Anything
else is an internal error (exit code 2).
"""

from __future__ import annotations


class SettlerError(Exception):
    """Root of every error raised by Settler."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class UserError(SettlerError):
    """Something the caller did wrong and can fix; never shown with a traceback."""


class ValidationError(UserError):
    """Input that does not satisfy the documented contract (bad id, malformed field, bad spec)."""


class FieldError(ValidationError):
    """A command's field is malformed (empty, too long, of the wrong form); it names the field. An
    interface adds where that field is documented (the CLI: the running command's ``--help``)."""


class InvalidIdError(ValidationError):
    """An identifier is not a canonical UUID; it names the field and the offending value."""

    def __init__(self, field: str, value: object) -> None:
        super().__init__(
            f"{field} must be a UUID, got {value!r}",
            hint="ids are UUIDs such as 0192f0c4-5d3e-7a10-8b2c-1d2e3f405162",
        )
        self.field = field
        self.value = value


class NotFoundError(UserError):
    """A referenced thing (run, stream, file, tenant, user) does not exist."""


class PermissionDeniedError(UserError):
    """The user lacks the tenant-scoped role the operation needs."""


class StateError(UserError):
    """The aggregate's current state forbids the command (e.g. cancelling a completed run)."""


class JobSpecError(ValidationError):
    """A job spec file is malformed or refers to something that does not exist."""


class ConcurrencyError(UserError):
    """A stream's version is not the one the writer expected; nothing was written."""

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {aggregate_id}: expected version {expected}, actual version {actual}; "
            "nothing was written",
            hint="reload the aggregate and retry the command",
        )
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class DuplicateEventError(UserError):
    """An event id already in the log was appended again with different content."""


class StoreError(SettlerError):
    """The event store cannot complete an operation (I/O, lock timeout, unreadable data)."""


class LockTimeoutError(StoreError):
    """Another process held a lock for longer than the configured timeout."""


class CorruptionError(StoreError):
    """Files of the data directory are damaged: the log's disagree with what was recorded when they
    were written, or the access file is no longer readable."""


class InsufficientMemoryError(UserError):
    """A run would need more memory than it may use; raising the limit or reading less per run fixes it."""
