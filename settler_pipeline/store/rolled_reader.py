"""Bulk reads through segment rollups (:mod:`~settler_pipeline.store.rollups`): the log's positions
as :meth:`~settler_pipeline.store.reader.LogReader.read` gives them, but with the summed matches of
segments that have a rollup read as those sums."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from settler_pipeline.ids import validate_uuid
from settler_pipeline.store import rollups
from settler_pipeline.store.payloads import TYPED
from settler_pipeline.store.reader import LogReader
from settler_pipeline.store.schema import COLUMNS


class RolledReader(LogReader):
    """The reader's bulk reads through rollups."""

    def read_rolled(
        self,
        from_position: int,
        to_position: int,
        *,
        rolled_upto: int,
        version: int | None,
        tenant_id: str | None = None,
        payload_fields: Sequence[str] = (),
        rest_fields: Sequence[str] = (),
    ) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.LazyFrame]:
        """Positions ``(from_position, to_position]`` as :meth:`read` gives them, but for the segments
        wholly inside ``(from_position, min(to_position, rolled_upto)]`` that have a rollup whose sums
        are at event version ``version`` (:mod:`~settler_pipeline.store.rollups`): ``(sums, rows,
        rest)``, the sum rows of those rollups (:meth:`~settler_pipeline.store.rollups.Rolled.sums`),
        the rows of the other segments and the tail (as :meth:`read` with ``payload_fields``), and the
        rollups' other rows (with the payload columns ``rest_fields``: they are few, so typed columns
        cost little there). Neither frame of rows is in position order. Used by bulk readers that need
        only sums of the matches."""
        while True:
            manifest = self._refresh().manifest
            rolled = rollups.choose(
                [
                    s
                    for s in manifest.segments
                    if s.last_position > from_position and s.first_position <= to_position
                ],
                self.rollups_dir,
                after=from_position,
                upto=min(to_position, rolled_upto),
                version=version,
            )
            rows = self.read(
                from_position,
                to_position,
                tenant_id=tenant_id,
                payload_fields=payload_fields,
                skip=rolled.segments,
            )
            # the rollups and the read must describe one set of segments (a compaction may replace
            # them in between: then choose again)
            if self._refresh().manifest.generation == manifest.generation:
                break
        rest, sums = rolled.rows([*COLUMNS, TYPED, *rest_fields]), rolled.sums()
        if tenant_id is not None:
            mine = pl.col("tenant_id") == validate_uuid("tenant_id", tenant_id)
            rest, sums = rest.filter(mine), sums.filter(mine)
        return sums, rows, rest

    def segment_cut(self, position: int) -> int:
        """The smallest position ``>= position`` that cuts no committed segment in two (each segment's
        events are all at or before it, or all after it): a bulk reader cutting there reads every
        segment in one piece (through its rollup, if it has one)."""
        segments = self._refresh().manifest.segments
        cut, moved = position, True
        while moved:
            moved = False
            for seg in segments:
                if seg.first_position <= cut < seg.last_position:
                    cut, moved = seg.last_position, True
        return cut
