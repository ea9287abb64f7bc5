"""Multi-part read models: rows grouped by run, stored as Parquet parts, published by generations.

A big read model (one row per match, millions of them) cannot be rewritten on every update, so its rows
live in parts. An update appends its new rows as new parts and rewrites only the parts holding rows it
changes (a confirmed proposal, a closed exception); small parts are merged now and then. Each part has a
*class* chosen by the read model, so rows that never change (automatic matches) are kept apart from rows
that do (proposals), and a review decision rewrites a small part, not a big one.

Publication is by generation (``generations.py``): a directory holding every part of generation N
(unchanged parts are hard links to the previous generation's files, so a generation costs only what
changed), swapped in by one symlink replace.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from settler_pipeline.files import staging_path
from settler_pipeline.projections.runindex import RUN, RunIndex

__all__ = ["RUN", "DirectoryStorage", "MemoryStorage", "Part", "PartStorage", "PartedTable"]

SMALL_FRACTION: Final = 8  # parts under max_rows / 8 are "small"; 8 small ones of similar size are merged


@dataclass(frozen=True)
class Part:
    """One part file: its name, row count, class and the currencies of its rows (None when its rows
    have no currency, or it was written before parts recorded them)."""

    name: str
    rows: int
    cls: str
    currencies: tuple[str, ...] | None = None


class PartStorage(ABC):
    """Where a table's part files are kept while it is being updated."""

    @abstractmethod
    def read(self, name: str) -> pl.DataFrame: ...

    @abstractmethod
    def write(self, name: str, frame: pl.DataFrame) -> None: ...

    @abstractmethod
    def drop(self, name: str) -> None: ...


class MemoryStorage(PartStorage):
    """Parts held in memory (time travel: a read model computed on demand, never stored)."""

    def __init__(self) -> None:
        self.frames: dict[str, pl.DataFrame] = {}

    def read(self, name: str) -> pl.DataFrame:
        return self.frames[name]

    def write(self, name: str, frame: pl.DataFrame) -> None:
        self.frames[name] = frame

    def drop(self, name: str) -> None:
        self.frames.pop(name, None)


class DirectoryStorage(PartStorage):
    """Parts of a generation being built: new files go to ``work_dir``; unchanged ones are read from the
    committed generation (``base_dir``) and hard-linked into ``work_dir`` at commit."""

    def __init__(self, work_dir: Path, base_dir: Path | None) -> None:
        self.work_dir = work_dir
        self.base_dir = base_dir
        self.written: set[str] = set()

    def read(self, name: str) -> pl.DataFrame:
        if name in self.written or self.base_dir is None:
            return pl.read_parquet(self.work_dir / name)
        return pl.read_parquet(self.base_dir / name)

    def write(self, name: str, frame: pl.DataFrame) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        target = self.work_dir / name
        staging = staging_path(target)
        # Snappy, not zstd: a rebuild writes ~70 parts of 10k rows on its critical path (the exceptions'
        # fold), and a part took 9.6 ms of CPU against 11.5 with zstd level 1 (reading it 3.7 against
        # 4.6 ms), for files ~2.2x larger (241 against 108 KB per 10k exception rows).
        frame.write_parquet(staging, compression="snappy", statistics=True)
        os.replace(staging, target)  # never writes through a hard link shared with an older generation
        self.written.add(name)  # made durable with the rest of the generation when it is published

    def drop(self, name: str) -> None:
        if name in self.written:
            (self.work_dir / name).unlink(missing_ok=True)
            self.written.discard(name)

    def written_paths(self) -> list[Path]:
        """The part files this generation wrote (not yet fsynced: publishing the generation does it)."""
        return [self.work_dir / name for name in sorted(self.written)]

    def link_unchanged(self, names: Collection[str]) -> None:
        """Hard-link the live parts this generation did not rewrite from the committed generation."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name not in self.written:
                assert self.base_dir is not None
                os.link(self.base_dir / name, self.work_dir / name)


class PartedTable:
    """Rows of a read model grouped by run (``reconciliation_id``), kept in parts.

    Besides the rows it keeps a run index: every run it has seen, the attempt the run is at, and the
    parts holding the run's rows, so that changing one run reads and rewrites only those parts."""

    def __init__(
        self,
        schema: dict[str, pl.DataType],
        classes: dict[str, int],
        classify: Callable[[pl.DataFrame], pl.Series],
        storage: PartStorage,
        *,
        parts: Collection[Part] = (),
        runs: RunIndex | pl.DataFrame | None = None,
        generation: int = 1,
    ) -> None:
        self.schema = schema
        self.classes = classes  # class -> maximum rows per part
        self.classify = classify
        self.storage = storage
        self.parts: dict[str, Part] = {p.name: p for p in parts}
        if runs is None:
            runs = RunIndex.empty()
        elif isinstance(runs, pl.DataFrame):
            runs = RunIndex.from_frame(runs)
        self.attempts = runs.attempts
        self.locations = runs.locations
        self.generation = generation
        self._sequence = 0
        self._dirty: dict[str, pl.DataFrame] = {}
        self._changed: list[pl.Series] = []  # runs whose index entries may have changed

    # -- the run index -----------------------------------------------------------------------------

    def known_attempts(self) -> pl.DataFrame:
        """``reconciliation_id, attempt`` of every run seen so far."""
        return self.attempts.select(RUN, "attempt")

    def set_attempts(self, final: pl.DataFrame, logged: pl.DataFrame | None = None) -> None:
        """Record the attempt each run of ``final`` (``reconciliation_id, attempt``) is now at (a run
        whose attempt changed has no logged rows any more), then add ``logged`` (``reconciliation_id,
        attempt, rows``: rows read from the log) to the counts of the runs' current attempts."""
        self._changed.append(final[RUN])
        if logged is not None:
            self._changed.append(logged[RUN])
        if final.height:
            before = self.attempts.join(final.select(RUN), on=RUN, how="semi")
            now = final.select(RUN, pl.col("attempt").cast(pl.Int64)).join(
                before, on=RUN, how="left", suffix="_before"
            )
            same = pl.col("attempt") == pl.col("attempt_before")
            kept = pl.when(same).then(pl.col("logged")).otherwise(0).alias("logged")
            now = now.select(RUN, "attempt", kept)
            self.attempts = pl.concat([self.attempts.join(final, on=RUN, how="anti"), now])
        if logged is not None and logged.height:
            added = (
                logged.join(self.attempts.select(RUN, pl.col("attempt").alias("_now")), on=RUN, how="left")
                .filter(pl.col("_now").is_null() | (pl.col("attempt") == pl.col("_now")))
                .group_by(RUN)
                .agg(pl.col("rows").sum().cast(pl.Int64).alias("_added"))
            )
            self.attempts = (
                self.attempts.join(added, on=RUN, how="left")
                .with_columns((pl.col("logged") + pl.col("_added").fill_null(0)).alias("logged"))
                .drop("_added")
            )

    def later_attempts(self) -> pl.DataFrame:
        """``reconciliation_id, attempt`` of the runs past their first attempt (whose earlier rows in
        the log are no longer theirs)."""
        return self.attempts.filter(pl.col("attempt") > 1).select(RUN, "attempt").sort(RUN)

    @property
    def logged_rows(self) -> int:
        """Rows read from the log (of the runs' current attempts)."""
        return int(self.attempts["logged"].sum())

    def runs_with_rows(self, runs: pl.Series) -> pl.Series:
        """Those of ``runs`` that have stored rows."""
        return self.locations.filter(pl.col(RUN).is_in(runs.implode()))[RUN].unique()

    @property
    def run_index(self) -> RunIndex:
        """The run index (``runindex.py``)."""
        return RunIndex(self.attempts, self.locations)

    def runs_frame(self) -> pl.DataFrame:
        """The run index as one frame (``reconciliation_id, attempt, part``; part null for a run
        without rows), sorted for a stable file."""
        return self.run_index.to_frame()

    def changed_runs(self) -> pl.Series:
        """The runs whose index entries changed since the table was loaded (perhaps a few more)."""
        return pl.concat([pl.Series(RUN, [], pl.String), *(s.rename(RUN) for s in self._changed)]).unique()

    # -- rows --------------------------------------------------------------------------------------

    def take(self, runs: pl.Series, classes: Collection[str] | None = None) -> pl.DataFrame:
        """Remove the stored rows of ``runs`` (only from parts of ``classes``, when given) and return them;
        the caller appends what should stay. Parts losing rows are rewritten by :meth:`flush`."""
        wanted = runs.unique().implode()
        names = self.locations.filter(pl.col(RUN).is_in(wanted))["part"].unique().sort().to_list()
        names = [n for n in names if classes is None or self.parts[n].cls in classes]
        taken = []
        for name in names:
            frame = self._dirty[name] if name in self._dirty else self.storage.read(name)
            mine = frame[RUN].is_in(wanted)
            taken.append(frame.filter(mine))
            self._dirty[name] = frame.filter(~mine)
        if names:
            self._changed.append(runs)
            self.locations = self.locations.filter(~(pl.col(RUN).is_in(wanted) & pl.col("part").is_in(names)))
        return pl.concat(taken) if taken else pl.DataFrame(schema=self.schema)

    def append(self, rows: pl.DataFrame, *, cls: str | None = None) -> None:
        """Store new rows as new parts (each at most its class's maximum size); all of class ``cls`` if
        given, else each of the class :attr:`classify` gives it."""
        if rows.height == 0:
            return
        rows = rows.select(list(self.schema)).cast(self.schema)  # type: ignore[arg-type]
        if cls is not None:
            groups = [(cls, rows)]
        else:
            classes = self.classify(rows)
            groups = [(c, rows.filter(classes == c)) for c in sorted(self.classes)]
        for name, chosen in groups:
            limit = self.classes[name]
            for start in range(0, chosen.height, limit):
                self._new_part(chosen.slice(start, limit), name)

    def _new_part(self, frame: pl.DataFrame, cls: str) -> None:
        self._sequence += 1
        name = f"part-{self.generation:06d}-{self._sequence:05d}.parquet"
        self.storage.write(name, frame)
        # A part's rows never change, so the analysts' views learn its currencies from the manifest.
        codes = None
        if "currency" in frame.columns:
            # a closest candidate's own currency too: its amount is shown in it
            shown = [frame[c] for c in ("currency", "closest_currency") if c in frame.columns]
            codes = tuple(sorted(pl.concat(shown).drop_nulls().unique().to_list()))
        self.parts[name] = Part(name, frame.height, cls, codes)
        runs = frame.select(RUN).unique().with_columns(pl.lit(name).alias("part"))
        self._changed.append(runs[RUN])
        self.locations = pl.concat([self.locations, runs])

    def flush(self) -> None:
        """Write the parts that lost rows since the last flush (dropping those left empty)."""
        for name, frame in sorted(self._dirty.items()):
            part = self.parts[name]
            if frame.height == 0:
                del self.parts[name]
                self.storage.drop(name)
            elif frame.height != part.rows:
                # Rewritten as a new part: a part name always means the same rows, in every generation.
                del self.parts[name]
                self.storage.drop(name)
                self.locations = self.locations.filter(pl.col("part") != name)
                self._new_part(frame, part.cls)
        self._dirty.clear()

    def compact(self) -> None:
        """Merge small parts of similar size once there are :data:`SMALL_FRACTION` of them (tiered, as
        in an LSM tree: a row is rewritten a logarithmic number of times, and one merge reads at most
        ``SMALL_FRACTION`` parts of its tier)."""
        self.flush()
        for cls, limit in sorted(self.classes.items()):
            tiers: dict[int, list[str]] = {}
            for name, part in sorted(self.parts.items()):
                if part.cls == cls and part.rows < limit // SMALL_FRACTION:
                    tier = int(math.log(max(part.rows, 1), SMALL_FRACTION))
                    tiers.setdefault(tier, []).append(name)
            for names in tiers.values():
                for start in range(0, len(names) - SMALL_FRACTION + 1, SMALL_FRACTION):
                    self._merge(names[start : start + SMALL_FRACTION], cls, limit)

    def _merge(self, names: list[str], cls: str, limit: int) -> None:
        merged = pl.concat([self.storage.read(n) for n in names])
        for name in names:
            del self.parts[name]
            self.storage.drop(name)
        self.locations = self.locations.filter(~pl.col("part").is_in(names))
        for start in range(0, merged.height, limit):
            self._new_part(merged.slice(start, limit), cls)

    def ensure_part(self) -> None:
        """Keep at least one (possibly empty) part, so a glob over the parts always finds a file."""
        if not self.parts:
            self._new_part(pl.DataFrame(schema=self.schema), sorted(self.classes)[0])

    def all_rows(self) -> pl.DataFrame:
        """Every stored row (after :meth:`flush`)."""
        frames = [self.storage.read(n) for n in sorted(self.parts)]
        return pl.concat(frames) if frames else pl.DataFrame(schema=self.schema)

    @property
    def row_count(self) -> int:
        return sum(p.rows for p in self.parts.values()) + self.logged_rows
