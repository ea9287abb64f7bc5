"""Exact lookup of event ids that are not time-ordered (name-based UUIDv5 ids of idempotent commands,
ids chosen by callers), so an idempotency check never scans the log.

Time-ordered UUIDv7 ids need no such index: the row groups' id ranges prune them to a few, and ids
newer than the log's greatest skip the lookup entirely. Any other id lands in an arbitrary place of that
range, so the index keeps one row per such event (``idx.named_ids``: id, segment, row group), written
with the segment's other index rows. A store instance holds them in a dictionary, extended with the
rows of each new segment only, so a one-event commit checks its id in microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from settler_pipeline.store.index import EventIndex

CACHE_LIMIT = 2_000_000  # ids held in memory per store instance (~150 bytes each); beyond, ask DuckDB


def is_time_ordered(event_id: str) -> bool:
    """Whether an id (canonical lower-case text) is a UUIDv7."""
    return event_id[14] == "7"


def named(ids: pl.Series) -> pl.Series:
    """The ids of ``ids`` that are not time-ordered."""
    return ids.filter(ids.str.slice(14, 1) != "7")


class NamedIds:
    """The in-memory map id → (segment, row group) of the non-time-ordered ids of the live segments."""

    def __init__(self, index: EventIndex) -> None:
        self._index = index
        self._where: dict[str, tuple[str, int]] | None = {}
        self._for: frozenset[str] = frozenset()

    def locate(self, ids: Iterable[str], live: frozenset[str]) -> list[tuple[str, int]]:
        """The (segment, row group) of each of ``ids`` held in a live segment (absent ids: none)."""
        wanted = list(ids)
        if not wanted or not live:
            return []
        cache = self._refresh(live)
        if cache is None:
            rows = self._index.query(
                "SELECT DISTINCT segment_path, row_group FROM idx.named_ids "
                "WHERE event_id IN (SELECT unnest($1::UUID[]))",
                [wanted],
            )
            return [(path, int(group)) for path, group in rows if path in live]
        return sorted({hit for i in wanted if (hit := cache.get(i)) is not None})

    def _refresh(self, live: frozenset[str]) -> dict[str, tuple[str, int]] | None:
        if live == self._for:
            return self._where
        if self._where is None and self._for:  # over the limit before: stay on the index
            self._for = live
            return None
        cache = self._where if self._where is not None else {}
        gone = self._for - live
        if gone:
            cache = {k: v for k, v in cache.items() if v[0] not in gone}
        missing = sorted(live - self._for)
        if missing:
            rows = self._index.query(
                "SELECT event_id::VARCHAR, segment_path, row_group FROM idx.named_ids "
                "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
                [missing],
            )
            for event_id, path, group in rows:
                cache[event_id] = (path, int(group))
        self._for = live
        self._where = cache if len(cache) <= CACHE_LIMIT else None
        return self._where
