"""The write-ahead log holding the log's newest, not yet segmented events.

Small commits (a command's one to three events) would otherwise each become a tiny Parquet file; here a
commit is one framed record appended to ``wal/wal-<first position>.log`` and fsynced. A record is
``MAGIC | length (u64) | crc32 (u32) | Arrow IPC record batch message`` (the schema is the fixed
event schema, so it is not repeated in every record). A record is committed once it is
complete with a matching checksum; a torn record left by a killed writer is ignored by readers and cut
off by the next writer. When the log grows past a threshold the writer moves its events into Parquet
segments (see ``segments.py``) and starts a new file.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from settler_pipeline.store.schema import EVENT_SCHEMA

MAGIC = b"SWL2"
_HEADER = struct.Struct(">4sQI")


def wal_name(first_position: int) -> str:
    """File name of the write-ahead log whose first event has ``first_position``."""
    return f"wal-{first_position:012d}.log"


@dataclass(frozen=True)
class WalContents:
    """The committed records of a write-ahead log file."""

    batches: list[pa.Table]
    valid_bytes: int  # length of the committed prefix; anything after it is a torn record
    file_bytes: int

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for batch in self.batches)

    def table(self) -> pa.Table:
        """All committed events of the file as one table (empty with the event schema if none)."""
        if not self.batches:
            return EVENT_SCHEMA.empty_table()
        return pa.concat_tables(self.batches)


def encode(batch: pa.Table) -> bytes:
    """One framed record for ``batch``."""
    if batch.schema != EVENT_SCHEMA:
        batch = batch.cast(EVENT_SCHEMA)
    payload = batch.combine_chunks().to_batches()[0].serialize().to_pybytes()
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def size(path: Path) -> int:
    """The file's length in bytes (-1 if it does not exist)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def read(path: Path, *, start: int = 0) -> WalContents:
    """Read the committed records of ``path`` from byte offset ``start`` (a record boundary).

    A missing file reads as empty. Reading stops at the first incomplete or corrupt record."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            blob = handle.read()
    except FileNotFoundError:
        return WalContents([], 0, 0)
    batches: list[pa.Table] = []
    offset = 0
    while offset + _HEADER.size <= len(blob):
        magic, length, crc = _HEADER.unpack_from(blob, offset)
        end = offset + _HEADER.size + length
        if magic != MAGIC or end > len(blob):
            break
        payload = blob[offset + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        record = ipc.read_record_batch(pa.py_buffer(payload), EVENT_SCHEMA)
        batches.append(pa.Table.from_batches([record]))
        offset = end
    return WalContents(batches, start + offset, start + len(blob))


def append(path: Path, batch: pa.Table, *, valid_bytes: int) -> int:
    """Durably append ``batch`` as one record after the first ``valid_bytes`` bytes of ``path``
    (cutting off any torn record beyond them). Returns the new committed length."""
    record = encode(batch)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != valid_bytes:
            os.ftruncate(fd, valid_bytes)
        os.pwrite(fd, record, valid_bytes)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return valid_bytes + len(record)
