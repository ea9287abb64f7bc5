"""The recorded committed head: the highest position ever acknowledged to a writer's caller.

Every commit writes it (``log/head``, 16 bytes) after its events are durable and before the call
returns, so it is a lower bound of what the log must hold. A small commit does not fsync it (its events
are already durable in the write-ahead file; a second sync would double the commit's cost): a process
crash keeps it (the page cache survives), and after a power loss it may only be *older*, which weakens
detection for that one case but never reports a loss that did not happen. Segment commits sync it.
Recovery, readers and ``verify`` compare
it with what the commit point and the write-ahead tail actually hold: a tail that was truncated or
deleted, or an older commit point put back, shows as acknowledged positions that cannot be found,
instead of those positions being silently handed out again.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from settler_pipeline.errors import CorruptionError

_MAGIC = b"SHD1"
_FORMAT = struct.Struct(">4sQ")
_CRC = struct.Struct(">I")


def read_head(path: Path) -> int | None:
    """The recorded head, or ``None`` when the log has none (a new log, or one written before heads
    were recorded). Raises :class:`CorruptionError` when the file is damaged."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    size = _FORMAT.size + _CRC.size
    if len(blob) == size:
        magic, head = _FORMAT.unpack_from(blob)
        (crc,) = _CRC.unpack_from(blob, _FORMAT.size)
        if magic == _MAGIC and zlib.crc32(blob[: _FORMAT.size]) == crc:
            return int(head)
    raise CorruptionError(
        f"{path} is damaged: the recorded committed head cannot be read",
        hint="run `settler log repair`, which records the head the log holds",
    )


def write_head(path: Path, head: int, *, sync: bool = True) -> None:
    """Record ``head`` (in place: 16 bytes in one sector, written by one writer at a time); with
    ``sync`` also make it durable."""
    body = _FORMAT.pack(_MAGIC, head)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, body + _CRC.pack(zlib.crc32(body)), 0)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
