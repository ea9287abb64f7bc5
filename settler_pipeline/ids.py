"""Identifier helpers: validation of UUIDs that may reach file paths or SQL, and time-ordered ids."""

from __future__ import annotations

import os
import re
import time
import uuid

import numpy as np
import polars as pl
import pyarrow as pa
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


def new_ids(n: int) -> pl.Series:
    """``n`` new UUIDv7 strings, vectorised (a bulk producer appending a million events must not pay
    for a million Python calls). They share the current millisecond and differ in 74 random bits."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, :6] = np.frombuffer(int(time.time() * 1000).to_bytes(6, "big"), np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    hex_chars = np.empty((n, 32), np.uint8)
    hex_chars[:, 0::2] = digits[raw >> 4]
    hex_chars[:, 1::2] = digits[raw & 0x0F]
    text = np.full((n, 36), ord("-"), np.uint8)
    for start, stop, src in ((0, 8, 0), (9, 13, 8), (14, 18, 12), (19, 23, 16), (24, 36, 20)):
        text[:, start:stop] = hex_chars[:, src : src + stop - start]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(text.tobytes()))
    series = pl.Series("event_id", array)
    return series
