"""`reindex`: rebuild the derived index (and a lost or unreadable commit point) from the segment files
alone. Stream copies are not rebuilt: they move to ``retired/`` and loads read the segments until the
next flush or compaction writes new ones."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.errors import StoreError
from settler_pipeline.store import stream_copies
from settler_pipeline.store import table as delta_table
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.index import EventIndex, granules
from settler_pipeline.store.manifest import Manifest
from settler_pipeline.store.schema import POLARS_SCHEMA
from settler_pipeline.store.segments import (
    row_group_starts,
    verify_file,
)


@dataclass
class ReindexReport:
    segments: int
    events: int
    rebuilt_manifest: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reindex(store: EventStore) -> ReindexReport:
    """Rebuild the index from the segment files alone (and the commit point too, as a new Delta commit,
    when it is missing or unreadable); the new index replaces the old one atomically."""
    with store.write_lock():
        rebuilt = False
        try:
            manifest = store.stored_state()
        except StoreError:
            manifest = None
        if delta_table.replay_problem(store.segments_dir) is not None:
            manifest = None  # other engines cannot read the table: rebuild it from the files
        if manifest is None:
            manifest = store.rebuild_manifest_from_files()
            check_contiguous(manifest)
            store.store_state(manifest)
            rebuilt = True
        fresh = store.index.path.with_name(f".{store.index.path.name}.rebuild.{os.getpid()}")
        for leftover in (fresh, Path(f"{fresh}.wal")):
            leftover.unlink(missing_ok=True)
        index = EventIndex(fresh)
        try:
            with index.writing() as con:
                for seg in manifest.segments:
                    path = store.segments_dir / seg.path
                    frame = read_verified(path, columns=list(POLARS_SCHEMA)).cast(POLARS_SCHEMA)  # type: ignore[arg-type]
                    index.add_segments(con, [seg], [granules(frame, seg.path, row_group_starts(path))])
        finally:
            index.close()
        from settler_pipeline.store.locks import file_lock

        with file_lock(store.index.lock_path):
            os.replace(fresh, store.index.path)
            Path(f"{store.index.path}.wal").unlink(missing_ok=True)
        # The new index names no stream copy: move them out (deleted with retired segments later).
        if store.copies_dir.exists():
            copies = [p.relative_to(store.copies_dir).as_posix() for p in store.copies_dir.rglob("*.parquet")]
            stream_copies.retire(store.copies_dir, store.retired_dir, copies)
        store.forget_view()
        return ReindexReport(len(manifest.segments), sum(s.rows for s in manifest.segments), rebuilt)


def read_verified(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    verify_file(path)
    return pl.read_parquet(path, columns=columns)


def check_contiguous(manifest: Manifest) -> None:
    covered = sum(s.rows for s in manifest.segments)
    lost = sum(
        min(last, manifest.segments_head) - first + 1
        for first, last in manifest.lost
        if first <= manifest.segments_head
    )
    if covered + lost != manifest.segments_head:
        raise StoreError(
            f"segment files hold {covered} events but positions reach {manifest.segments_head}",
            hint="segments are missing or duplicated; restore them from a backup, then reindex",
        )
