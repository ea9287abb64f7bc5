"""Maintenance of the log: verify, compact, reindex, stats.

* ``verify`` reads everything and changes nothing: every committed segment exists and its bytes match
  the checksum recorded in its name and in the committed state, positions are exactly ``1..head`` with no gap
  or duplicate, stream versions are ``1..n`` per stream, event ids are unique, and the index agrees
  with the segments. Each problem is reported; none is fixed.
* ``compact`` merges small segments of an event date into larger ones, each with a stream copy (see
  ``stream_copies.py``). Events, positions and versions are unchanged; the replaced segment files stay
  in place, removed from the table but still part of its earlier versions, and the next compaction after
  the grace period deletes them with the table's VACUUM: readers of an earlier version (time travel, a
  reader that planned on it) can finish. Their stream copies and rollups, private, move to ``retired/``.
  It also writes the rollup (``rollups.py``) of every segment that should have one and has none (a
  segment written before rollups existed, or a crash between a segment and its rollup).
* ``repair`` (``repair.py``) does what can be done for a damaged log; ``verify`` lives in ``verify.py``.
* ``reindex`` rebuilds the DuckDB index (and, if it is missing, the commit point) from the segment files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.store import rollups, stream_copies
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.manifest import SegmentInfo
from settler_pipeline.store.payloads import with_payload_columns
from settler_pipeline.store.recovery import RETIRE_GRACE_HOURS
from settler_pipeline.store.reindex import ReindexReport, read_verified, reindex
from settler_pipeline.store.repair import RepairReport, open_for_repair, repair
from settler_pipeline.store.schema import POLARS_SCHEMA
from settler_pipeline.store.segments import (
    write_segments,
)
from settler_pipeline.store.stream_copies import index_rows, write_copies
from settler_pipeline.store.verify import VerifyReport, verify

__all__ = [
    "CompactReport",
    "ReindexReport",
    "RepairReport",
    "VerifyReport",
    "compact",
    "open_for_repair",
    "reindex",
    "repair",
    "stats",
    "verify",
]

COMPACT_TARGET_ROWS = 1_000_000


@dataclass
class CompactReport:
    segments_before: int
    segments_after: int
    events_rewritten: int
    retired: list[str]
    rollups_written: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compact(
    store: EventStore, *, target_rows: int = COMPACT_TARGET_ROWS, grace_hours: int = RETIRE_GRACE_HOURS
) -> CompactReport:
    """Merge runs of small segments (per event date) into segments of up to ``target_rows`` events.

    Also moves the write-ahead tail into segments, and first deletes the files compactions replaced more
    than ``grace_hours`` ago. Positions, versions and contents are unchanged."""
    with store.write_lock():
        store.purge_retired(grace_hours)
        view = store.committed_view()
        if view.tail.rows:
            store.flush_tail(view)
            view = store.committed_view()
        manifest = view.manifest
        by_date: dict[str, list[Any]] = {}
        for seg in manifest.segments:
            by_date.setdefault(seg.event_date, []).append(seg)
        groups: list[list[Any]] = []
        for segs in by_date.values():
            current: list[Any] = []
            rows = 0
            for seg in sorted(segs, key=lambda s: s.first_position):
                if current and rows + seg.rows > target_rows:
                    groups.append(current)
                    current, rows = [], 0
                current.append(seg)
                rows += seg.rows
            if current:
                groups.append(current)
        merge = [g for g in groups if len(g) > 1]
        if not merge:
            written = _backfill_rollups(store, manifest.segments)
            return CompactReport(len(manifest.segments), len(manifest.segments), 0, [], written)
        written_all = []
        removed: list[str] = []
        for group in merge:
            frame = (
                pl.concat([read_verified(store.segments_dir / s.path) for s in group], how="diagonal_relaxed")
                .cast(POLARS_SCHEMA)  # type: ignore[arg-type]
                .sort("global_position")
            )
            # events stored untyped (files written before the typed payload columns, bulk batches
            # without them) get them from their JSON now: compaction rewrites the rows anyway
            frame = with_payload_columns(frame)
            written_all.extend(
                write_segments(frame, store.segments_dir, store.staging_dir, derive=store.roll_up)
            )
            removed.extend(s.path for s in group)
        copies = index_rows(
            write_copies(
                [(w.info.event_date, w.frame) for w in written_all], store.copies_dir, store.staging_dir
            ),
            written_all,
        )
        with store.index.writing() as con:
            store.index.add_segments(
                con,
                [w.info for w in written_all],
                [w.granules for w in written_all],
            )
            store.index.add_stream_copies(con, copies)
        # One Delta commit adds the new files and removes the replaced ones (left in place for earlier
        # versions): a reader of any table version sees every event exactly once.
        new = store.commit_segments(manifest, added=[w.info for w in written_all], removed=removed)
        with store.index.writing() as con:
            old_copies = store.index.copies_of(con, removed)
            store.index.remove_segments(con, removed)
        stream_copies.retire(store.copies_dir, store.retired_dir, old_copies)
        rollups.retire(store.rollups_dir, store.retired_dir, removed)
        return CompactReport(
            len(manifest.segments),
            len(new.segments),
            sum(w.info.rows for w in written_all),
            removed,
            _backfill_rollups(store, new.segments),
        )


def _backfill_rollups(store: EventStore, segments: Sequence[SegmentInfo]) -> int:
    """Write the rollup of each of ``segments`` that has none and whose events are mostly matches (by
    the index's counts, so other segments are not read); returns how many were written. A rollup is
    derived from its segment's verified bytes alone, so writing one late is as safe as writing it
    with the segment."""
    have = rollups.listing(store.rollups_dir)
    lacking = [s for s in segments if Path(s.path).name.removesuffix(".parquet") not in have]
    if not lacking:
        return 0
    matched = dict(
        store.index.query(
            "SELECT segment_path, sum(events)::BIGINT FROM idx.type_counts "
            "WHERE event_type = $1 AND segment_path IN (SELECT unnest($2::VARCHAR[])) GROUP BY 1",
            [e.RECORD_MATCHED, [s.path for s in lacking]],
        )
    )
    written = 0
    for seg in lacking:
        if matched.get(seg.path, 0) >= rollups.MIN_SHARE * seg.rows:
            rows = read_verified(store.segments_dir / seg.path)
            if rollups.write(seg.path, rows, store.rollups_dir, store.staging_dir) is not None:
                written += 1
    return written


def stats(store: EventStore) -> dict[str, Any]:
    """Size and shape of the log, for people and monitoring (a damaged log is described, not refused)."""
    view = store.current_view()
    manifest = view.manifest
    live = sorted(s.path for s in manifest.segments)
    by_type = store.index.query(
        "SELECT event_type, sum(events)::BIGINT FROM idx.type_counts "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[])) GROUP BY 1 ORDER BY 1",
        [live],
    )
    counts = {t: int(n) for t, n in by_type}
    if view.tail.rows:
        for t, n in view.tail.frame.group_by("event_type").len().iter_rows():
            counts[t] = counts.get(t, 0) + int(n)
    tenants = store.index.query(
        "SELECT count(DISTINCT tenant_id) FROM idx.type_counts "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
        [live],
    )[0][0]
    streams = store.index.query(
        "SELECT count(DISTINCT aggregate_id) FROM idx.stream_granules "
        "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
        [live],
    )[0][0]

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    return {
        "data_dir": str(store.data_dir),
        "head_position": view.head,
        "recorded_head": view.recorded_head,
        "damaged": [*view.damage, *_file_damage(store, manifest.segments)],
        # what the table and the tail hold: positions lost to a repair are part of the head, not events
        "events": sum(s.rows for s in manifest.segments) + view.tail.rows,
        "segments": len(manifest.segments),
        "segment_bytes": sum(s.size_bytes for s in manifest.segments),
        "wal_events": view.tail.rows,
        "wal_bytes": view.wal_valid_bytes,
        "index_bytes": size(store.index.path),
        "snapshot_bytes": size(store.snapshots.path),
        "streams_in_segments": int(streams or 0),
        "tenants_in_segments": int(tenants or 0),
        "events_by_type": counts,
        "generation": manifest.generation,
        "table_version": store.state_version,
        "published_position": manifest.segments_head,
        "table_uri": store.table_uri,
        "last_commit_at": (
            view.tail.last_created_at.isoformat() if view.tail.last_created_at else manifest.last_created_at
        ),
    }


def _file_damage(store: EventStore, segments: Sequence[SegmentInfo]) -> list[str]:
    """The committed segment files that are missing or not the size their commit recorded: a cheap
    look (no file is read) that ``verify`` completes with checksums."""
    problems: list[str] = []
    for seg in segments:
        try:
            found = (store.segments_dir / seg.path).stat().st_size
        except FileNotFoundError:
            problems.append(
                f"segment {seg.path} (positions {seg.first_position}..{seg.last_position}) is missing"
            )
            continue
        if found != seg.size_bytes:
            problems.append(
                f"segment {seg.path} is {found} bytes, its commit recorded {seg.size_bytes}: cut short or "
                "overwritten"
            )
    return problems
