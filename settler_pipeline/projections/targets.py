"""A read model being brought forward: its rows and checkpoint as loaded, each batch of events applied
to them, and the result staged to be published, rows and checkpoint together (a small read model
rewritten whole, a large one as parts of a new generation; see ``parts.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import polars as pl

from settler_pipeline.projections.batch import EventBatch
from settler_pipeline.projections.checkpoint import Checkpoint, Staged, read_table, stage_table
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.logrows import LogFiles, write_filters
from settler_pipeline.projections.parts import DirectoryStorage, MemoryStorage, Part, PartedTable, PartStorage
from settler_pipeline.projections.projection import PartedReadModel, ReadModel, TableReadModel


class Target(ABC):
    """One read model being brought forward: its rows and checkpoint, advanced batch by batch and
    committed (rows and checkpoint together) at the end."""

    def __init__(self, read_model: ReadModel, checkpoint: Checkpoint) -> None:
        self.model = read_model
        self.checkpoint = checkpoint
        self.changed = False

    def advance(self, batch: EventBatch) -> None:
        part = batch.since(self.checkpoint.position)
        if part.height:
            self.apply(part)
        # Also when the batch held no reconciliation events: the checkpoint moves on all the same.
        self.changed = self.changed or batch.upto > self.checkpoint.position
        self.checkpoint = self.checkpoint.advanced(batch.upto, part.max_timestamp)

    @abstractmethod
    def apply(self, batch: EventBatch) -> None: ...

    @abstractmethod
    def stage(self) -> Staged:
        """Write the rows and checkpoint as the read model's next version, to be published with
        :func:`~settler_pipeline.projections.checkpoint.publish_staged`."""

    @abstractmethod
    def stored_rows(self) -> pl.DataFrame: ...

    @abstractmethod
    def row_count(self) -> int: ...

    def published(self) -> pl.DataFrame:
        return self.model.derive(self.stored_rows(), self.checkpoint.max_event_time)


class TableTarget(Target):
    model: TableReadModel

    def __init__(self, read_model: TableReadModel, root: Path | None, *, fresh: bool = False) -> None:
        stored = None if root is None or fresh else read_table(root / f"{read_model.name}.parquet")
        if stored is not None and stored[1].version == read_model.version:
            state, checkpoint = stored
            state = state.select(list(read_model.stored_schema())).cast(read_model.stored_schema())  # type: ignore[arg-type]
        else:
            state, checkpoint = read_model.empty(), Checkpoint(read_model.name, read_model.version)
        super().__init__(read_model, checkpoint)
        self.root = root
        self.state = state
        self.changed = stored is None or stored[1].version != read_model.version

    def apply(self, batch: EventBatch) -> None:
        self.state = self.model.apply(self.state, batch)

    def stage(self) -> Staged:
        assert self.root is not None
        rows = self.state.sort(list(self.model.key))
        return stage_table(self.root / f"{self.model.name}.parquet", rows, self.checkpoint)

    def stored_rows(self) -> pl.DataFrame:
        return self.state

    def row_count(self) -> int:
        return self.state.height


class PartedTarget(Target):
    model: PartedReadModel

    def __init__(
        self,
        read_model: PartedReadModel,
        root: Path | None,
        *,
        fresh: bool = False,
        log: LogFiles | None = None,
    ) -> None:
        self.log = log if read_model.logged else None
        self.currencies: dict[str, set[str]] = {}
        self.generations = Generations(root, read_model.name) if root is not None else None
        if self.generations is not None:
            self.generations.clean()
        loaded = self.generations.load() if self.generations is not None and not fresh else None
        if loaded is not None and loaded[1]["checkpoint"]["version"] != read_model.version:
            loaded = None
        storage: PartStorage
        if self.generations is None:
            generation, storage = 1, MemoryStorage()
        else:
            generation, storage = self.generations.begin(fresh=loaded is None)
        self.storage = storage
        if loaded is None:
            checkpoint = Checkpoint(read_model.name, read_model.version)
            parts: list[Part] = []
            runs = None
        else:
            _, manifest, runs = loaded
            checkpoint = Checkpoint.from_dict(manifest["checkpoint"])
            parts = [Part(**{**p, "currencies": _codes(p.get("currencies"))}) for p in manifest["parts"]]
            before = int(manifest.get("log", {}).get("position", 0))
            known = manifest.get("log", {}).get("currencies", {})
            self.currencies.update({tenant: set(codes) for tenant, codes in known.items()})
            if self.log is not None and self.log.position < before:  # never read fewer from the log
                self.log = LogFiles(self.log.segments_dir, before)
        super().__init__(read_model, checkpoint)
        self.table = PartedTable(
            read_model.stored_schema(),
            read_model.classes,
            read_model.classify,
            storage,
            parts=parts,
            runs=runs,
            generation=generation,
        )
        self.changed = loaded is None

    def apply(self, batch: EventBatch) -> None:
        self.model.apply(self.table, batch)
        self.table.flush()
        if self.log is not None and batch.logged.height:
            # per tenant, the currencies of the rows read from the log (the analyst columns' scale)
            pairs = batch.logged.select("tenant_id", "currency").unique().drop_nulls().iter_rows()
            for tenant, currency in pairs:
                self.currencies.setdefault(tenant, set()).add(currency)

    def stage(self) -> Staged:
        assert self.generations is not None and isinstance(self.storage, DirectoryStorage)
        self.table.compact()
        self.table.ensure_part()
        log, written = None, []
        if self.log is not None and self.table.logged_rows:
            # which rows of the published log's files (read_models/events) are this generation's
            written = write_filters(
                self.storage.work_dir, self.table.generation, self.log.position, self.table.later_attempts()
            )
            currencies = {t: sorted(codes) for t, codes in sorted(self.currencies.items())}
            log = {"position": self.log.position, "rows": self.table.logged_rows, "currencies": currencies}
        return self.generations.stage(self.table, self.storage, self.checkpoint, log, written)

    def stored_rows(self) -> pl.DataFrame:
        self.table.flush()
        return self.table.all_rows()

    def row_count(self) -> int:
        return self.table.row_count


def target(
    read_model: ReadModel, root: Path | None, *, fresh: bool = False, log: LogFiles | None = None
) -> Target:
    """The target of ``read_model`` published under ``root`` (in memory when ``root`` is None), from
    its stored rows and checkpoint, or from nothing when ``fresh`` or stored with another version.
    ``log``: the published log's files, which a read model that reads rows from the log links."""
    if isinstance(read_model, TableReadModel):
        return TableTarget(read_model, root, fresh=fresh)
    assert isinstance(read_model, PartedReadModel)
    return PartedTarget(read_model, root, fresh=fresh, log=log)


def _codes(listed: list[str] | None) -> tuple[str, ...] | None:
    return None if listed is None else tuple(listed)
