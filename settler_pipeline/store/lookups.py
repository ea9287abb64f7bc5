"""Lookups a commit needs: existing event ids (idempotent retries) and stream versions (optimistic
concurrency), from the tail, the exact and coarse indexes and cached stream versions."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import polars as pl

from settler_pipeline.store.batch import retried_positions
from settler_pipeline.store.named_ids import is_time_ordered
from settler_pipeline.store.named_ids import named as named_ids
from settler_pipeline.store.segments import (
    verify_files,
)
from settler_pipeline.store.view import LogBase, LogView
from settler_pipeline.store.writer_types import AppendResult

_log = logging.getLogger("settler_pipeline.store.event_store")
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LogLookups(LogBase):
    """What a writer must know before it commits: whether a batch's ids are already in the log (an
    idempotent retry) and each stream's current version."""

    def _maybe_stored(self, ids: list[str], view: LogView) -> bool:
        """Whether any of ``ids`` may be in the log: exact for the tail and for ids that are not
        time-ordered; for time-ordered ids, true only when not newer than the log's greatest."""
        max_id = view.manifest.max_event_id
        newest = _newest_id(view)
        ids = [i for i in ids if i <= newest]  # an id greater than every stored one is new
        if not ids:
            return False
        named = [i for i in ids if not is_time_ordered(i)]
        return any(
            i in view.tail.ids or (is_time_ordered(i) and max_id and i <= max_id) for i in ids
        ) or bool(named and self._named.locate(named, view.live_paths))

    def _find_existing(self, frame: pl.DataFrame, view: LogView) -> AppendResult | None:
        """Handle idempotent retries: ``None`` when no event id of the batch is in the log yet."""
        newest = _newest_id(view)
        # An id greater than every stored id is new, whatever its kind: a batch of fresh time-ordered
        # ids needs no lookup at all.
        ids = frame["event_id"].filter(frame["event_id"] <= newest) if newest else frame["event_id"].clear()
        if not ids.len():
            return None
        found: list[pl.DataFrame] = []
        if view.tail.rows:
            in_tail = view.tail.ids
            if any(i in in_tail for i in ids.to_list()):
                hit = view.tail.frame.filter(pl.col("event_id").is_in(ids.implode()))
                found.append(hit)
        others = named_ids(ids)
        if others.len():
            # exact: the index names the row group of every id that is not time-ordered
            hits = self._read_granules(
                lambda v: self._named.locate(others.to_list(), v.live_paths),
                [],
                pl.col("event_id").is_in(others.implode()),
                view,
            )
            if hits.height:
                found.append(hits)
        max_id = view.manifest.max_event_id
        ordered = ids.filter(ids.str.slice(14, 1) == "7")
        maybe_old = ordered.filter(ordered <= max_id) if max_id else ordered.clear()
        if maybe_old.len():
            # Row groups whose id range overlaps the batch's (time-ordered ids keep this to a few).
            hits = self._read_granules(
                "SELECT segment_path, row_group FROM idx.row_groups "
                "WHERE max_event_id >= $1::UUID AND min_event_id <= $2::UUID",
                [maybe_old.min(), maybe_old.max()],
                pl.col("event_id").is_in(maybe_old.implode()),
                view,
            )
            if hits.height:
                found.append(hits)
        if not found:
            return None
        return AppendResult(retried_positions(frame, pl.concat(found)), duplicate=True)

    def _current_versions(self, streams: Sequence[str], view: LogView) -> dict[str, int]:
        """Current version of each stream (0 if new), as of ``view``; cached between commits."""
        self._catch_up_versions(view)
        result: dict[str, int] = {}
        unknown: list[str] = []
        for aggregate_id in streams:
            if aggregate_id in self._versions:
                result[aggregate_id] = self._versions[aggregate_id]
            elif view.manifest.max_aggregate_id and aggregate_id <= view.manifest.max_aggregate_id:
                unknown.append(aggregate_id)
            else:
                result[aggregate_id] = self._tail_version(view, aggregate_id)
        if unknown:
            rows = self.index.query(
                "SELECT aggregate_id::VARCHAR, segment_path, max(max_version) FROM idx.stream_granules "
                "WHERE aggregate_id IN (SELECT unnest($1::UUID[])) GROUP BY 1, 2",
                [unknown],
            )
            live = view.live_paths
            from_index: dict[str, int] = {}
            for aggregate_id, path, version in rows:
                if path in live:
                    from_index[aggregate_id] = max(from_index.get(aggregate_id, 0), int(version))
            for aggregate_id in unknown:
                result[aggregate_id] = max(
                    from_index.get(aggregate_id, 0), self._tail_version(view, aggregate_id)
                )
        self._versions.update(result)
        return result

    @staticmethod
    def _tail_version(view: LogView, aggregate_id: str) -> int:
        return view.tail.versions.get(aggregate_id, 0)

    def _catch_up_versions(self, view: LogView) -> None:
        """Apply other writers' commits since our cached versions were taken."""
        if self._versions_at == view.head:
            return
        if not self._versions:  # nothing cached yet: nothing to bring up to date (no log scan)
            self._versions_at = view.head
            return
        if self._versions_at > view.head:  # the log was rebuilt under us: start over
            self._versions.clear()
        else:
            since = self._versions_at
            newer = [s for s in view.manifest.segments if s.last_position > since]
            verify_files([self.segments_dir / s.path for s in newer])
            parts = [
                pl.scan_parquet(self.segments_dir / s.path)
                .select("global_position", "aggregate_id", "aggregate_version")
                .filter(pl.col("global_position") > since)
                .collect()
                for s in newer
            ]
            parts.append(
                view.tail.frame.select("global_position", "aggregate_id", "aggregate_version").filter(
                    pl.col("global_position") > since
                )
            )
            changed = pl.concat(parts).group_by("aggregate_id").agg(pl.col("aggregate_version").max())
            for aggregate_id, version in changed.iter_rows():
                if aggregate_id in self._versions:
                    self._versions[aggregate_id] = max(self._versions[aggregate_id], version)
        self._versions_at = view.head


def _newest_id(view: LogView) -> str:
    """The greatest event id stored in ``view`` ("" for an empty log): ids above it are new. A
    manifest without the figure (older logs) gives an upper bound that disables the shortcut."""
    in_segments = view.manifest.max_event_id
    if not in_segments and view.manifest.segments:
        in_segments = "~"  # sorts after every lower-case UUID
    return max(in_segments, view.tail.max_event_id)
