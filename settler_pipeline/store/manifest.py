"""The manifest: the atomically replaced list of committed segments and the current write-ahead log.

Replacing ``manifest.json`` (write to a temporary file, fsync, ``os.replace``, fsync the directory) is
the commit point of every segment write, flush and compaction: a segment file not named here is not
part of the log (it is an orphan of an interrupted write and is removed by recovery). Readers take one
manifest and so see one consistent set of segments, never a partial batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from settler_pipeline.errors import CorruptionError
from settler_pipeline.files import write_atomic

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SegmentInfo:
    """One immutable Parquet segment file of the log."""

    path: str  # relative to the segments directory, e.g. "event_date=2026-11-01/seg-...parquet"
    first_position: int
    last_position: int
    rows: int
    size_bytes: int
    sha256: str
    min_created_at: str
    max_created_at: str

    @property
    def event_date(self) -> str:
        return self.path.split("/", 1)[0].removeprefix("event_date=")


@dataclass(frozen=True)
class Manifest:
    """The committed state of the log's segments; see the module docstring."""

    generation: int = 0
    segments_head: int = 0  # highest position held in segments; positions 1..segments_head are there
    wal_first_position: int = 1  # positions >= this live in the write-ahead log file named after it
    last_created_at: str | None = None
    max_event_id: str = ""  # greatest event id in the segments, to skip index lookups for newer ids
    max_aggregate_id: str = ""  # greatest stream id in the segments, likewise for new streams
    segments: tuple[SegmentInfo, ...] = field(default_factory=tuple)
    # position ranges acknowledged once but lost to damage, recorded by `settler log repair`; they are
    # never handed out again and `verify` reports them instead of a gap
    lost: tuple[tuple[int, int], ...] = ()
    published_head: int = 0  # positions 1..published_head are in the Delta table (see table.py)

    @property
    def lost_head(self) -> int:
        """The highest position recorded as lost (0 if none)."""
        return max((last for _, last in self.lost), default=0)

    @property
    def lost_count(self) -> int:
        return sum(last - first + 1 for first, last in self.lost)

    def to_json(self) -> str:
        body = asdict(self)
        body["format_version"] = FORMAT_VERSION
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body: dict[str, Any] = json.loads(text)
        if body.pop("format_version", None) != FORMAT_VERSION:
            raise CorruptionError("manifest.json has an unknown format version")
        body["segments"] = tuple(SegmentInfo(**seg) for seg in body["segments"])
        body["lost"] = tuple((int(a), int(b)) for a, b in body.get("lost", ()))
        return cls(**body)


def load(path: Path) -> Manifest | None:
    """The manifest at ``path``, or ``None`` when the log has none yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return Manifest.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptionError(
            f"{path} is unreadable: {exc}", hint="run `settler log reindex` to rebuild it from the segments"
        ) from exc


def store(path: Path, manifest: Manifest) -> None:
    """Atomically and durably replace the manifest at ``path``."""
    write_atomic(path, manifest.to_json().encode())
