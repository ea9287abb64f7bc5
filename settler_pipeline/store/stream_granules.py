"""Which row groups hold each stream's events, kept in memory per store instance so that loading a
stream needs no index round trip (~2 ms): extended with the granules of new segments only."""

from __future__ import annotations

from settler_pipeline.store import limits
from settler_pipeline.store.index import EventIndex

Granule = tuple[str, int, str, int, int]  # segment, row group, aggregate type, first and last version


class StreamGranules:
    """Stream → granules of the live segments (see the module docstring)."""

    def __init__(self, index: EventIndex) -> None:
        self._index = index
        self._granules: dict[str, list[Granule]] | None = {}
        self._for: frozenset[str] = frozenset()

    def of(self, live: frozenset[str]) -> dict[str, list[Granule]] | None:
        """The map for the segments ``live``; ``None`` when the log has too many granules to hold
        (reads then ask the index)."""
        if self._for == live:
            return self._granules
        if self._granules is None and self._for:  # over the limit before: stay on the index
            return None
        cache = dict(self._granules or {})
        gone = self._for - live
        if gone:
            cache = {k: [g for g in v if g[0] not in gone] for k, v in cache.items()}
        missing = sorted(live - self._for)
        if missing:
            rows = self._index.query(
                "SELECT aggregate_id::VARCHAR, segment_path, row_group, aggregate_type, min_version, "
                "max_version FROM idx.stream_granules WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
                [missing],
            )
            for aggregate_id, path, row_group, kind, first, last in rows:
                cache.setdefault(aggregate_id, []).append((path, int(row_group), kind, int(first), int(last)))
        self._for = live
        if sum(len(v) for v in cache.values()) > limits.GRANULE_CACHE_LIMIT:
            self._granules = None
            return None
        self._granules = cache
        return cache
