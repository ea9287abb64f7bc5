"""The write-ahead log holding the log's newest, not yet segmented events.

Small commits (a command's one to three events) would otherwise each become a tiny Parquet file; here a
commit is one framed record appended to ``wal/wal-<first position>.log`` and fsynced. A record is

    MAGIC | first position (u64) | rows (u32) | length (u64) | payload crc32 (u32) | header crc32 (u32)
    | Arrow IPC record batch message (``length`` bytes)

The schema is the fixed event schema, so it is not repeated in every record. The header has its own
checksum and names the positions it holds, so a reader that meets a damaged record can *resynchronise*:
it skips to the next place where a whole, checksummed record starts, keeps reading the intact records
after it, and reports the damaged byte range and the positions it held (the gap between the records
around it). Damage is never silently cut off: what is unreadable is reported by :func:`read` and it is
the caller (recovery, ``verify``, ``repair``) that decides, using the recorded committed head, whether
trailing bytes are a torn, never-acknowledged write or lost acknowledged events.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from settler_pipeline.files import write_atomic
from settler_pipeline.store.schema import EVENT_SCHEMA

MAGIC = b"SWL3"
_LEGACY_MAGIC = b"SWL2"
_LEGACY_HEADER = struct.Struct(">4sQI")
_HEADER = struct.Struct(">4sQIQI")  # magic, first position, rows, length, payload crc
_HEADER_CRC = struct.Struct(">I")
HEADER_SIZE = _HEADER.size + _HEADER_CRC.size


def wal_name(first_position: int) -> str:
    """File name of the write-ahead log whose first event has ``first_position``."""
    return f"wal-{first_position:012d}.log"


@dataclass(frozen=True)
class DamagedRange:
    """Bytes ``start..end`` of a write-ahead file that hold no intact record.

    ``after_position`` is the last position of the intact record before it (0 if none) and
    ``next_position`` the first position of the intact record after it (``None`` when the damage runs
    to the end of the file): the positions strictly between them were in the damaged bytes."""

    start: int
    end: int
    after_position: int
    next_position: int | None

    @property
    def lost(self) -> tuple[int, int] | None:
        """The positions known to be lost with these bytes (``None`` if none are known)."""
        if self.next_position is None or self.next_position <= self.after_position + 1:
            return None
        return (self.after_position + 1, self.next_position - 1)


@dataclass(frozen=True)
class WalContents:
    """The intact records of a write-ahead log file and the damaged ranges between them."""

    batches: list[pa.Table]
    valid_bytes: int  # end of the last intact record; anything after it is a torn or damaged record
    file_bytes: int
    damaged: list[DamagedRange] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for batch in self.batches)

    @property
    def mid_file_damage(self) -> list[DamagedRange]:
        """Damaged ranges followed by an intact record (never a torn write: writes only append)."""
        return [d for d in self.damaged if d.next_position is not None]

    @property
    def trailing(self) -> DamagedRange | None:
        """Unreadable bytes after the last intact record: a torn write, or damage (the caller decides)."""
        return next((d for d in self.damaged if d.next_position is None), None)

    def table(self) -> pa.Table:
        """All intact events of the file as one table (empty with the event schema if none)."""
        if not self.batches:
            return EVENT_SCHEMA.empty_table()
        return pa.concat_tables(self.batches)


def encode(batch: pa.Table) -> bytes:
    """One framed record for ``batch`` (rows in position order)."""
    return b"".join(bytes(part) for part in _framed(batch))


def _framed(batch: pa.Table) -> tuple[bytes, pa.Buffer]:
    """A record as its header (with its checksum) and its payload, not yet joined (no copy)."""
    if batch.schema != EVENT_SCHEMA:
        batch = batch.cast(EVENT_SCHEMA)
    payload = batch.combine_chunks().to_batches()[0].serialize()
    first = int(batch.column("global_position")[0].as_py()) if batch.num_rows else 0
    header = _HEADER.pack(MAGIC, first, batch.num_rows, payload.size, zlib.crc32(payload))
    return header + _HEADER_CRC.pack(zlib.crc32(header)), payload


def size(path: Path) -> int:
    """The file's length in bytes (-1 if it does not exist)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def stamp(path: Path) -> tuple[int, int]:
    """``(inode, size)`` of the file (``(0, -1)`` if it does not exist): a rewrite changes the inode."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, -1)
    return (st.st_ino, st.st_size)


def _record_at(blob: bytes, offset: int) -> tuple[int, int, int, int] | None:
    """``(first position, rows, payload offset, end offset)`` of an intact record starting at
    ``offset``, else ``None``."""
    if blob[offset : offset + 4] == _LEGACY_MAGIC:
        return _legacy_record_at(blob, offset)
    if offset + HEADER_SIZE > len(blob):
        return None
    magic, first, rows, length, crc = _HEADER.unpack_from(blob, offset)
    if magic != MAGIC:
        return None
    (header_crc,) = _HEADER_CRC.unpack_from(blob, offset + _HEADER.size)
    if zlib.crc32(blob[offset : offset + _HEADER.size]) != header_crc:
        return None
    end = offset + HEADER_SIZE + length
    if end > len(blob) or zlib.crc32(blob[offset + HEADER_SIZE : end]) != crc:
        return None
    return first, rows, offset + HEADER_SIZE, end


def _legacy_record_at(blob: bytes, offset: int) -> tuple[int, int, int, int] | None:
    """A record of the earlier format (``SWL2 | length | crc | payload``: no positions in the header,
    so they are read from the payload). Logs written before the current format stay readable."""
    if offset + _LEGACY_HEADER.size > len(blob):
        return None
    _, length, crc = _LEGACY_HEADER.unpack_from(blob, offset)
    start = offset + _LEGACY_HEADER.size
    end = start + length
    if end > len(blob) or zlib.crc32(blob[start:end]) != crc:
        return None
    positions = ipc.read_record_batch(pa.py_buffer(blob[start:end]), EVENT_SCHEMA).column(0)
    first = int(positions[0].as_py()) if len(positions) else 0
    return first, len(positions), start, end


def read(path: Path, *, start: int = 0, after_position: int = 0) -> WalContents:
    """Read the intact records of ``path`` from byte offset ``start`` (a record boundary), reporting
    damaged ranges; ``after_position`` is the last position before ``start`` (for gap reporting).

    A missing file reads as empty."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            blob = handle.read()
    except FileNotFoundError:
        return WalContents([], 0, 0)
    batches: list[pa.Table] = []
    damaged: list[DamagedRange] = []
    offset = 0
    valid = 0
    last = after_position
    while offset < len(blob):
        found = _record_at(blob, offset)
        if found is None:
            resume, found = _resync(blob, offset + 1)
            damaged.append(DamagedRange(start + offset, start + resume, last, found[0] if found else None))
            if found is None:
                break
            offset = resume
        first, rows, body, end = found
        payload = blob[body:end]
        record = ipc.read_record_batch(pa.py_buffer(payload), EVENT_SCHEMA)
        batches.append(pa.Table.from_batches([record]))
        last = first + rows - 1 if rows else last
        offset = valid = end
    return WalContents(batches, start + valid, start + len(blob), damaged)


def _resync(blob: bytes, offset: int) -> tuple[int, tuple[int, int, int, int] | None]:
    """The next offset at or after ``offset`` where an intact record starts (or the end of ``blob``)."""
    while True:
        candidates = [i for i in (blob.find(MAGIC, offset), blob.find(_LEGACY_MAGIC, offset)) if i >= 0]
        if not candidates:
            return len(blob), None
        offset = min(candidates)
        found = _record_at(blob, offset)
        if found is not None:
            return offset, found
        offset += 1


def append(path: Path, batch: pa.Table, *, valid_bytes: int) -> int:
    """Durably append ``batch`` as one record at byte ``valid_bytes`` of ``path``. Returns the new
    committed length. The caller has moved aside anything beyond ``valid_bytes`` (a torn record)."""
    header, payload = _framed(batch)
    size = len(header) + payload.size
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != valid_bytes:
            os.ftruncate(fd, valid_bytes)
        written = os.pwritev(fd, [header, memoryview(payload)], valid_bytes)  # no copy of a big payload
        if written != size:  # a short write: finish it (the record is checksummed as one unit)
            rest = memoryview(header + payload.to_pybytes())
            while written < size:
                written += os.pwrite(fd, rest[written:], valid_bytes + written)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return valid_bytes + size


def write_new(path: Path, batches: list[pa.Table]) -> None:
    """Write ``batches`` as a fresh write-ahead file at ``path`` (replacing any file there atomically)."""
    write_atomic(path, b"".join(encode(batch) for batch in batches))
