"""Checkpoints: how far into the log a read model's stored rows go, written in the same atomic step as
those rows.

A single-file read model keeps its checkpoint in the Parquet file's key-value metadata, so writing the
file to a temporary name and ``os.replace``-ing it into place publishes rows and checkpoint at once; a
reader (or a crash) sees the old file or the new one, never a mix. A multi-part read model keeps it in
the manifest of its generation (see ``parts.py``), committed by one symlink swap.

An update publishes every read model it changed together (:func:`publish_staged`): each one's new
files are written first (:class:`Staged`), all of them are made durable in one round of fsyncs issued
at once, then each is swapped in, and the directory is fsynced once. A crash before that last fsync
can lose some swaps: each read model then keeps its previous rows and checkpoint, whole, and the next
update applies the same events again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow.parquet as pq

from settler_pipeline.files import atomic_replace, fsync_all, fsync_dir, staging_path

META_KEY: Final = "settler.read_model"


@dataclass(frozen=True)
class Checkpoint:
    """The last global position applied to a read model, and what its rows were built with."""

    name: str
    version: int  # the read model's definition version; another version means "rebuild"
    position: int = 0  # last global position applied (0: nothing yet)
    max_event_time: datetime | None = None  # newest event time applied: the as-of time of derived ages
    updated_at: datetime | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = asdict(self)
        for key in ("max_event_time", "updated_at"):
            body[key] = body[key].isoformat() if body[key] is not None else None
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Checkpoint:
        """Inverse of ``json.loads(checkpoint.to_json())``."""
        body = dict(body)
        for key in ("max_event_time", "updated_at"):
            body[key] = datetime.fromisoformat(body[key]) if body.get(key) else None
        return cls(**body)

    def advanced(self, position: int, max_event_time: datetime | None) -> Checkpoint:
        """This checkpoint after applying events up to ``position``, the newest at ``max_event_time``."""
        newest = self.max_event_time
        if max_event_time is not None and (newest is None or max_event_time > newest):
            newest = max_event_time
        return Checkpoint(self.name, self.version, max(position, self.position), newest, datetime.now(UTC))


def write_table(path: Path, frame: pl.DataFrame, checkpoint: Checkpoint) -> None:
    """Write ``frame`` with ``checkpoint`` in its metadata and publish both with one ``os.replace``.

    A reader that has the previous file open keeps reading it; new readers see the new one."""
    with atomic_replace(path) as staging:
        frame.write_parquet(
            staging, compression="zstd", compression_level=1, metadata={META_KEY: checkpoint.to_json()}
        )


@dataclass(frozen=True)
class Staged:
    """A read model's next version, written but not yet published: the files and directories to make
    durable first, and the swap (one ``os.replace``) that publishes it."""

    durable: tuple[Path, ...]
    swap: Callable[[], None]
    discard: Callable[[], None] = lambda: None  # what to remove if it is never swapped in


def stage_table(path: Path, frame: pl.DataFrame, checkpoint: Checkpoint) -> Staged:
    """``frame`` with ``checkpoint`` in its metadata written beside ``path``; publishing the result
    replaces ``path`` with it (see :func:`write_table`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(path)
    frame.write_parquet(
        staging, compression="zstd", compression_level=1, metadata={META_KEY: checkpoint.to_json()}
    )
    return Staged((staging,), lambda: os.replace(staging, path), lambda: staging.unlink(missing_ok=True))


def publish_staged(root: Path, staged: Sequence[Staged]) -> None:
    """Publish ``staged`` versions (files under ``root``, swapped in order): every file durable in one
    round of fsyncs, then the swaps, then one fsync of ``root`` (see the module docstring)."""
    if not staged:
        return
    swapped = 0
    try:
        fsync_all([path for one in staged for path in one.durable])
        for one in staged:
            one.swap()
            swapped += 1
        fsync_dir(root)
    finally:
        for one in staged[swapped:]:  # an uncommitted generation is left to Generations.clean
            one.discard()


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint stored in a read model file (``None`` if the file or its checkpoint is missing)."""
    try:
        meta = pq.read_metadata(path).metadata or {}
    except FileNotFoundError:
        return None
    raw = meta.get(META_KEY.encode())
    return Checkpoint.from_json(raw) if raw else None


def read_table(path: Path) -> tuple[pl.DataFrame, Checkpoint] | None:
    """A read model file's rows and checkpoint, or ``None`` if there is no such file."""
    if not path.exists():
        return None
    with open(path, "rb") as handle:  # one open file: rows and checkpoint of the same version
        raw = (pq.read_metadata(handle).metadata or {}).get(META_KEY.encode())
        if not raw:
            return None
        handle.seek(0)
        return pl.read_parquet(handle), Checkpoint.from_json(raw)
