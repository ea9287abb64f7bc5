"""The log's state: the committed segments, the current write-ahead file and the figures kept beside them.

The state is committed with every segment write, flush and compaction *in the Delta commit* that adds
and removes the segment files (``settler.state`` in its ``commitInfo``, see ``table.py``): that commit
is the commit point, and a segment file no state names is not part of the log (an orphan of an
interrupted write, moved to quarantine by recovery). Readers take the state of one table version and
so see one consistent set of segments, never a partial batch.

Logs written before the Delta log was the commit point kept the state in ``log/manifest.json`` (format
1, the same fields plus ``published_head``). :func:`load` reads it for the one-time migration a writer
makes on open (and for read-only opens of a directory no writer has migrated yet); after the migration
the file is moved to the quarantine folder and never read again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from settler_pipeline.errors import CorruptionError

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
    """The committed state of the log; see the module docstring."""

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
            raise CorruptionError("the log's state has an unknown format version")
        body["segments"] = tuple(SegmentInfo(**seg) for seg in body["segments"])
        body["lost"] = tuple((int(a), int(b)) for a, b in body.get("lost", ()))
        body.pop("published_head", None)  # format 1 as written to manifest.json; the table says it now
        return cls(**body)


def load(path: Path) -> Manifest | None:
    """The state in a former ``manifest.json`` at ``path``, or ``None`` when there is none."""
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
