"""Time travel by time: the newest position committed at or before a given time (the log "as of" a
time), from the index's commit-time ranges of row groups, reading only the row groups that straddle
the time, and from the write-ahead tail."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from settler_pipeline.domain.envelope import as_utc
from settler_pipeline.errors import StoreError
from settler_pipeline.store.view import LogBase, LogView


class TimeTravel(LogBase):
    """The position at a time (see the module docstring); the readers build on it."""

    def position_at(self, when: datetime) -> int:
        """The newest position committed at or before ``when`` (0 if none): the log "as of" a time."""
        when = as_utc(when)
        for _ in range(20):
            view = self._refresh()
            first = view.tail.first_created_at
            if first is not None and first <= when:
                newest = view.tail.frame.filter(pl.col("created_at") <= when)["global_position"].max()
                return int(newest)  # type: ignore[arg-type]
            best = self._position_in_segments(when, view)
            # a flush or compaction meanwhile may have taken the view's segments out of the index
            if best is not None and self._load_manifest().generation == view.manifest.generation:
                return best
            self._view = None
        raise StoreError("the log kept being compacted while being read", hint="retry the read")

    def _position_in_segments(self, when: datetime, view: LogView) -> int | None:
        """``position_at`` over the view's segments; ``None`` if a segment was retired meanwhile."""
        found = self.index.query(
            "SELECT segment_path, row_group, max_position, max_created_at <= $1 FROM idx.row_groups "
            "WHERE min_created_at <= $1",
            [when],
        )
        live = view.live_paths
        best = 0
        straddling: dict[str, list[int]] = {}
        for path, row_group, max_position, whole in found:
            if path not in live:
                continue
            if whole:
                best = max(best, int(max_position))
            else:
                straddling.setdefault(path, []).append(int(row_group))
        for path, groups in straddling.items():
            try:
                part = self._reader.read_groups(
                    path, sorted(groups), columns=["global_position", "created_at"]
                )
            except FileNotFoundError:
                return None
            newest = part.filter(pl.col("created_at") <= when)["global_position"].max()
            if newest is not None:
                best = max(best, int(newest))  # type: ignore[arg-type]
        return best
