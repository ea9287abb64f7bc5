"""Publication of a multi-part read model by generations.

``read_models/<name>`` is a symlink to ``.gens/<name>/g<N>/``, a directory holding every file of
generation N. A new generation is built beside the current one, its manifest (checkpoint, parts) is
written next to it, and the symlink is swapped with one ``os.replace``: *that swap is the commit*.
Readers do not resolve the symlink once per query: DuckDB expands a view's glob through it when it plans
and opens each file through it again when it reads, so every file name in a generation must name the
same bytes in any generation that has it (parts and filter files carry the generation that wrote them):
a query a swap overtakes then fails to open a file (it is run again) instead of mixing two generations.
Old generations are removed after a grace period so that a query still reading one by its resolved
path can finish. An uncommitted generation
left by a crash is deleted on the next load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl

from settler_pipeline.files import staging_path
from settler_pipeline.projections.checkpoint import Checkpoint, Staged, publish_staged
from settler_pipeline.projections.parts import DirectoryStorage, PartedTable
from settler_pipeline.projections.runindex import DELTA_FRACTION, MAX_DELTAS, RunIndex

GRACE_S: Final = 600.0  # how long a replaced generation stays readable
_GEN = re.compile(r"^g(\d{6})$")


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

    def load(self) -> tuple[int, dict[str, Any], RunIndex] | None:
        """The committed generation, its manifest and run index (None if never committed)."""
        generation = self.current()
        if generation is None:
            return None
        manifest = json.loads((self.dir / f"g{generation:06d}.json").read_text())
        files = manifest.get("run_index")
        if files is None:  # written before the index was kept as a base and deltas
            runs = RunIndex.from_frame(pl.read_parquet(self.dir / f"g{generation:06d}.runs.parquet"))
        else:
            runs = RunIndex.read([self._gen_dir(generation) / f["name"] for f in files])
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

    def stage(
        self,
        table: PartedTable,
        storage: DirectoryStorage,
        checkpoint: Checkpoint,
        log: dict[str, Any] | None = None,
        written: Sequence[Path] = (),
    ) -> Staged:
        """``table``'s parts as its next generation, manifest and run index written, to be published
        with :func:`~settler_pipeline.projections.checkpoint.publish_staged` (the symlink swap).
        ``log`` (the rows read from the log, see ``logrows.py``) goes into the manifest; ``written``:
        other files the generation wrote (not yet durable)."""
        generation = table.generation
        storage.link_unchanged(table.parts)
        manifest: dict[str, Any] = {
            "checkpoint": json.loads(checkpoint.to_json()),
            "generation": generation,
            "parts": [
                {"name": p.name, "rows": p.rows, "cls": p.cls}
                | ({} if p.currencies is None else {"currencies": list(p.currencies)})
                for p in sorted(table.parts.values(), key=lambda p: p.name)
            ],
        }
        if log is not None:
            manifest["log"] = log
        manifest["run_index"], runs_path = self._stage_index(table, storage)
        return self.stage_manifest(generation, manifest, [*storage.written_paths(), *written, runs_path])

    def _stage_index(
        self, table: PartedTable, storage: DirectoryStorage
    ) -> tuple[list[dict[str, Any]], Path]:
        """Write ``table``'s run index into the generation (``runindex.py``): a delta of the runs it
        changed after the committed generation's files (hard-linked), or a new base. Returns the
        files, in order, for the manifest, and the file written."""
        previous: list[dict[str, Any]] = []
        if storage.base_dir is not None:
            previous = list((self.manifest() or {}).get("run_index", []))
        # not *.parquet: a glob over the published parts must not take it for one
        path = storage.work_dir / f"runs-g{table.generation:06d}.index"
        storage.work_dir.mkdir(parents=True, exist_ok=True)
        if previous and len(previous) - 1 < MAX_DELTAS:
            changed = table.changed_runs()
            named = sum(int(f["runs"]) for f in previous[1:]) + changed.len()
            if named * DELTA_FRACTION <= int(previous[0]["runs"]):
                assert storage.base_dir is not None
                for kept in previous:
                    os.link(storage.base_dir / kept["name"], storage.work_dir / kept["name"])
                runs = table.run_index.write(path, changed)
                return [*previous, {"name": path.name, "runs": runs}], path
        return [{"name": path.name, "runs": table.run_index.write(path)}], path

    def publish(self, generation: int, manifest: dict[str, Any], written: Sequence[Path] = ()) -> None:
        """Publish generation ``generation`` (its directory complete; ``written``: the files it wrote
        that are not durable yet): its manifest, then the symlink swap that commits it."""
        publish_staged(self.root, [self.stage_manifest(generation, manifest, written)])

    def stage_manifest(
        self, generation: int, manifest: dict[str, Any], written: Sequence[Path] = ()
    ) -> Staged:
        """Generation ``generation`` (its directory complete) with its manifest written: what to make
        durable (``written``, the manifest, and the directories naming them) and the symlink swap."""
        work = self._gen_dir(generation)
        work.mkdir(parents=True, exist_ok=True)
        manifest_path = self._manifest(generation)
        staging = staging_path(manifest_path)
        staging.write_text(json.dumps(manifest, sort_keys=True))
        # Named before it is durable: until the swap below it is an uncommitted generation's, which
        # load ignores and clean deletes.
        os.replace(staging, manifest_path)

        def swap() -> None:
            link_staging = staging_path(self.link)
            link_staging.unlink(missing_ok=True)
            os.symlink(os.path.relpath(work, self.root), link_staging)
            os.replace(link_staging, self.link)  # the commit

        # Everything the swap will point at is made durable first (publish_staged), with one round of
        # fsyncs issued together (the files, the manifest, and the directories naming them).
        return Staged((*written, manifest_path, work, self.dir), swap)

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
