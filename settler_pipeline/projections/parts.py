"""Multi-part read models: rows grouped by run, stored as Parquet parts, published by generations.

A big read model (one row per match, millions of them) cannot be rewritten on every update, so its rows
live in parts. An update appends its new rows as new parts and rewrites only the parts holding rows it
changes (a confirmed proposal, a closed exception); small parts are merged now and then. Each part has a
*class* chosen by the read model, so rows that never change (automatic matches) are kept apart from rows
that do (proposals), and a review decision rewrites a small part, not a big one.

Publication is by generation: ``read_models/<name>`` is a symlink to ``.gens/<name>/g<N>/``, a
directory holding every part of generation N (unchanged parts are hard links to the previous
generation's files, so a generation costs only what changed). A new generation is built beside the
current one, its manifest (checkpoint, parts) and run index are written next to it, and the symlink is
swapped with one ``os.replace``: *that swap is the commit*. Readers resolve the symlink once per query
and so see one consistent generation; old generations are removed after a grace period so that a query
still reading one can finish. An uncommitted generation left by a crash is deleted on the next load.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl

from settler_pipeline.files import fsync_dir, fsync_file, replace_durably, staging_path
from settler_pipeline.projections.checkpoint import Checkpoint

RUN: Final = "reconciliation_id"
GRACE_S: Final = 600.0  # how long a replaced generation stays readable
SMALL_FRACTION: Final = 8  # parts under max_rows / 8 are "small"; 8 small ones of similar size are merged
_GEN = re.compile(r"^g(\d{6})$")
_RUNS_SCHEMA: Final = {RUN: pl.String(), "attempt": pl.Int64(), "part": pl.String()}


@dataclass(frozen=True)
class Part:
    """One part file: its name, row count and class."""

    name: str
    rows: int
    cls: str


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
        frame.write_parquet(staging, compression="zstd", compression_level=1, statistics=True)
        fsync_file(staging)  # the directory is fsynced once, when the generation is published
        os.replace(staging, target)  # never writes through a hard link shared with an older generation
        self.written.add(name)

    def drop(self, name: str) -> None:
        if name in self.written:
            (self.work_dir / name).unlink(missing_ok=True)
            self.written.discard(name)

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
        runs: pl.DataFrame | None = None,
        generation: int = 1,
    ) -> None:
        self.schema = schema
        self.classes = classes  # class -> maximum rows per part
        self.classify = classify
        self.storage = storage
        self.parts: dict[str, Part] = {p.name: p for p in parts}
        runs = runs if runs is not None else pl.DataFrame(schema=_RUNS_SCHEMA)
        self.attempts = runs.select(RUN, "attempt").unique(RUN, keep="first")
        self.locations = runs.filter(pl.col("part").is_not_null()).select(RUN, "part").unique()
        self.generation = generation
        self._sequence = 0
        self._dirty: dict[str, pl.DataFrame] = {}

    # -- the run index -----------------------------------------------------------------------------

    def known_attempts(self) -> pl.DataFrame:
        """``reconciliation_id, attempt`` of every run seen so far."""
        return self.attempts

    def set_attempts(self, final: pl.DataFrame) -> None:
        """Record the attempt each run of ``final`` (``reconciliation_id, attempt``) is now at."""
        if final.height:
            kept = self.attempts.join(final, on=RUN, how="anti")
            self.attempts = pl.concat([kept, final.select(RUN, pl.col("attempt").cast(pl.Int64))])

    def runs_with_rows(self, runs: pl.Series) -> pl.Series:
        """Those of ``runs`` that have stored rows."""
        return self.locations.filter(pl.col(RUN).is_in(runs.implode()))[RUN].unique()

    def runs_frame(self) -> pl.DataFrame:
        """The run index as one frame (``reconciliation_id, attempt, part``; part null for a run
        without rows), sorted for a stable file."""
        return (
            self.attempts.join(self.locations, on=RUN, how="full", coalesce=True)
            .select(list(_RUNS_SCHEMA))
            .cast(_RUNS_SCHEMA)  # type: ignore[arg-type]
            .sort(RUN, "part", nulls_last=True)
        )

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
        self.parts[name] = Part(name, frame.height, cls)
        runs = frame.select(RUN).unique().with_columns(pl.lit(name).alias("part"))
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
        return sum(p.rows for p in self.parts.values())


class Generations:
    """The published generations of one multi-part read model under ``root`` (the read_models dir)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.link = root / name
        self.dir = root / ".gens" / name

    def _gen_dir(self, generation: int) -> Path:
        return self.dir / f"g{generation:06d}"

    def current(self) -> int | None:
        """The committed generation number (None before the first commit)."""
        try:
            target = os.readlink(self.link)
        except (FileNotFoundError, OSError):
            return None
        match = _GEN.match(Path(target).name)
        return int(match.group(1)) if match else None

    def load(self) -> tuple[int, dict[str, Any], pl.DataFrame] | None:
        """The committed generation, its manifest and run index (None if never committed)."""
        generation = self.current()
        if generation is None:
            return None
        manifest = json.loads((self.dir / f"g{generation:06d}.json").read_text())
        runs = pl.read_parquet(self.dir / f"g{generation:06d}.runs.parquet")
        return generation, manifest, runs

    def manifest(self) -> dict[str, Any] | None:
        """The committed generation's manifest (checkpoint and parts), without loading its run index."""
        generation = self.current()
        if generation is None:
            return None
        manifest: dict[str, Any] = json.loads(self._manifest(generation).read_text())
        return manifest

    def begin(self, *, fresh: bool) -> tuple[int, DirectoryStorage]:
        """Storage for the next generation; ``fresh`` starts empty (a rebuild), otherwise unchanged parts
        are carried over from the committed one."""
        current = self.current()
        generation = (current or 0) + 1
        work = self._gen_dir(generation)
        if work.exists():
            shutil.rmtree(work)  # left by an interrupted update: never committed
        base = None if fresh or current is None else self._gen_dir(current)
        return generation, DirectoryStorage(work, base)

    def commit(self, table: PartedTable, storage: DirectoryStorage, checkpoint: Checkpoint) -> None:
        """Publish ``table``'s parts as its generation: manifest and run index first, then the symlink."""
        generation = table.generation
        storage.link_unchanged(table.parts)
        storage.work_dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(storage.work_dir)
        prefix = self.dir / f"g{generation:06d}"
        manifest = {
            "checkpoint": json.loads(checkpoint.to_json()),
            "generation": generation,
            "parts": [
                {"name": p.name, "rows": p.rows, "cls": p.cls}
                for p in sorted(table.parts.values(), key=lambda p: p.name)
            ],
        }
        runs_path = prefix.with_name(prefix.name + ".runs.parquet")
        table.runs_frame().write_parquet(runs_path, compression="zstd", compression_level=1)
        manifest_path = prefix.with_name(prefix.name + ".json")
        staging = staging_path(manifest_path)
        staging.write_text(json.dumps(manifest, sort_keys=True))
        fsync_file(runs_path)
        replace_durably(staging, manifest_path)
        link_staging = staging_path(self.link)
        link_staging.unlink(missing_ok=True)
        os.symlink(os.path.relpath(storage.work_dir, self.root), link_staging)
        os.replace(link_staging, self.link)  # the commit
        fsync_dir(self.root)

    def clean(self) -> None:
        """Delete uncommitted generations (newer than the current one: left by an interrupted update)
        and generations replaced more than :data:`GRACE_S` ago. Only the updater calls this, holding
        the update lock."""
        current = self.current()
        if current is None or not self.dir.exists():
            return
        now = time.time()
        numbers = sorted(
            {int(m.group(1)) for p in self.dir.iterdir() if (m := re.match(r"^g(\d{6})", p.name))}
        )
        committed = [n for n in numbers if n <= current and self._manifest(n).exists()]
        for number in numbers:
            if number > current:
                self._remove(number)
            elif number < current:
                # Replaced when the next committed generation was written.
                replaced_by = next(n for n in committed if n > number)
                if now - self._manifest(replaced_by).stat().st_mtime > GRACE_S:
                    self._remove(number)

    def _manifest(self, generation: int) -> Path:
        return self.dir / f"g{generation:06d}.json"

    def _remove(self, generation: int) -> None:
        shutil.rmtree(self._gen_dir(generation), ignore_errors=True)
        for suffix in (".json", ".runs.parquet"):
            (self.dir / f"g{generation:06d}{suffix}").unlink(missing_ok=True)

    def remove_all(self) -> None:
        """Forget every generation (the read model is dropped)."""
        self.link.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
