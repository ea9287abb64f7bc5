"""Which row groups hold each stream's events, kept in memory per store instance so that loading a
stream needs no index round trip (~2 ms): extended with the granules of new segments only.

A segment with a stream copy (see ``stream_copies.py``) is read through its copy: its granules name
the copy's row groups, one or two per stream, instead of the segment's."""

from __future__ import annotations

from settler_pipeline.store import limits
from settler_pipeline.store.index import COPY_TABLE, EventIndex

# segment, row group, stream copy ("" to read the segment itself), aggregate type, first and last version
Granule = tuple[str, int, str, str, int, int]

_GRANULES_SQL = """
SELECT aggregate_id::VARCHAR, segment_path, row_group, copy_path, aggregate_type, min_version, max_version
FROM idx.stream_copies WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))
UNION ALL
SELECT aggregate_id::VARCHAR, segment_path, row_group, '', aggregate_type, min_version, max_version
FROM idx.stream_granules WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))
AND segment_path NOT IN (SELECT segment_path FROM idx.stream_copies)
"""
_STREAM_SQL = """
SELECT segment_path, row_group, copy_path FROM idx.stream_copies
WHERE aggregate_id = $1::UUID AND aggregate_type = $2 AND max_version >= $3 AND min_version <= $4
UNION ALL
SELECT segment_path, row_group, '' FROM idx.stream_granules
WHERE aggregate_id = $1::UUID AND aggregate_type = $2 AND max_version >= $3 AND min_version <= $4
AND segment_path NOT IN (SELECT segment_path FROM idx.stream_copies)
"""


class StreamGranules:
    """Stream → granules of the live segments (see the module docstring)."""

    def __init__(self, index: EventIndex) -> None:
        self._index = index
        self._granules: dict[str, list[Granule]] | None = {}
        self._for: frozenset[str] = frozenset()
        self._has_copies: bool | None = None

    def _copies_known(self) -> bool:
        """Whether the index has the copies table (an index written before copies existed has not)."""
        if not self._has_copies:
            self._has_copies = self._index.has_table(COPY_TABLE)
        return self._has_copies

    def lookup(
        self, aggregate_id: str, aggregate_type: str, low: int, high: int
    ) -> list[tuple[str, int, str]]:
        """Granules of one stream's versions ``low..high`` straight from the index (no cache)."""
        if self._copies_known():
            rows = self._index.query(_STREAM_SQL, [aggregate_id, aggregate_type, low, high])
        else:
            rows = [
                (path, group, "")
                for path, group in self._index.query(
                    "SELECT segment_path, row_group FROM idx.stream_granules WHERE aggregate_id = $1::UUID "
                    "AND aggregate_type = $2 AND max_version >= $3 AND min_version <= $4",
                    [aggregate_id, aggregate_type, low, high],
                )
            ]
        return [(str(path), int(group), str(copy)) for path, group, copy in rows]

    def of_stream(
        self, live: frozenset[str], aggregate_id: str, aggregate_type: str, low: int, high: int
    ) -> list[tuple[str, int, str]]:
        """Granules of one stream's versions ``low..high`` among the segments ``live``: from the map,
        or from the index when the log has too many granules to map."""
        cache = self.of(live)
        if cache is None:
            return self.lookup(aggregate_id, aggregate_type, low, high)
        return [
            (path, row_group, copy)
            for path, row_group, copy, kind, first, last in cache.get(aggregate_id, ())
            if kind == aggregate_type and last >= low and first <= high
        ]

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
            if self._copies_known():
                rows = self._index.query(_GRANULES_SQL, [missing])
            else:
                rows = self._index.query(
                    "SELECT aggregate_id::VARCHAR, segment_path, row_group, '', aggregate_type, min_version, "
                    "max_version FROM idx.stream_granules "
                    "WHERE segment_path IN (SELECT unnest($1::VARCHAR[]))",
                    [missing],
                )
            for aggregate_id, path, row_group, copy, kind, first, last in rows:
                cache.setdefault(aggregate_id, []).append(
                    (path, int(row_group), copy, kind, int(first), int(last))
                )
        self._for = live
        if sum(len(v) for v in cache.values()) > limits.GRANULE_CACHE_LIMIT:
            self._granules = None
            return None
        self._granules = cache
        return cache
