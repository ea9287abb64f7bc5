"""Identifier helpers: validation of UUIDs that may reach file paths or SQL, and time-ordered ids."""

from __future__ import annotations

import re
import uuid

import uuid6

from settler_pipeline.errors import InvalidIdError

# Canonical lowercase or uppercase hyphenated form only: ids end up in SQL parameters and file names,
# so anything looser (braces, urn: prefixes, missing hyphens) is refused rather than normalised silently.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(UUID_PATTERN)


def validate_uuid(field: str, value: object) -> str:
    """Return ``value`` as a canonical lowercase UUID string, or raise :class:`InvalidIdError` naming
    ``field`` and the value."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise InvalidIdError(field, value)
    return value.lower()


def new_id() -> str:
    """A new time-ordered UUIDv7 as a string; time order keeps DuckDB zone maps useful for lookups."""
    return str(uuid6.uuid7())
