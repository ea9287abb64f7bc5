"""What a read model is: its published columns (with their meaning), its key, and a mergeable fold.

Every read model is a fold over the log that can be applied chunk by chunk: ``apply(state, batch)``
turns the state after positions ``1..p`` into the state after ``1..q`` given the events ``p+1..q``.
Applying the whole log at once, or in any chunks, gives the same rows (a property test checks it), so
``update`` (events after the checkpoint) and ``rebuild`` (from position 0) agree. The state is the
stored rows themselves plus a few hidden columns (names starting with ``_``) holding the partial
aggregates a merge needs; views and :func:`read_model` show only the published columns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import polars as pl

from settler_pipeline.projections.batch import EventBatch
from settler_pipeline.projections.parts import PartedTable


@dataclass(frozen=True)
class Column:
    """A published column: name, type and meaning (the meaning is also the column's comment in DuckDB)."""

    name: str
    dtype: pl.DataType
    doc: str


class ReadModel(ABC):
    """A read model's definition; see the module docstring."""

    name: ClassVar[str]
    # Bump when the rows it computes change: stored rows of another version are rebuilt.
    version: ClassVar[int]
    doc: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    key: ClassVar[tuple[str, ...]]
    hidden: ClassVar[dict[str, pl.DataType]] = {}
    derived: ClassVar[frozenset[str]] = frozenset()  # published columns computed on read, never stored

    @classmethod
    def public_schema(cls) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in cls.columns}

    @classmethod
    def stored_schema(cls) -> dict[str, pl.DataType]:
        stored = {c.name: c.dtype for c in cls.columns if c.name not in cls.derived}
        return {**stored, **cls.hidden}

    @classmethod
    def empty(cls) -> pl.DataFrame:
        return pl.DataFrame(schema=cls.stored_schema())

    def derive(self, rows: pl.DataFrame, as_of_time: datetime | None) -> pl.DataFrame:
        """The published rows: stored rows plus derived columns, in column order, sorted by the key."""
        return self.published_columns(rows.lazy(), as_of_time).sort(list(self.key)).collect()

    def published_columns(self, rows: pl.LazyFrame, as_of_time: datetime | None) -> pl.LazyFrame:
        """Stored rows plus derived columns, in column order (in the order given: a query sorts what
        it needs, and a count needs no sort)."""
        return rows.select(list(self.public_schema()))


class TableReadModel(ReadModel):
    """A read model small enough to keep in one file, rewritten whole on every update."""

    @abstractmethod
    def apply(self, state: pl.DataFrame, batch: EventBatch) -> pl.DataFrame:
        """The stored rows after ``batch`` given the stored rows before it."""


class PartedReadModel(ReadModel):
    """A read model of many rows per run, kept in parts (see ``parts.py``)."""

    classes: ClassVar[dict[str, int]]  # part class -> maximum rows per part
    # Whether its rows of typed RecordMatched events are read from the log's files (``logrows.py``).
    logged: ClassVar[bool] = False

    def classify(self, rows: pl.DataFrame) -> pl.Series:
        """The part class of each row (one class unless a model keeps mutable rows apart)."""
        return pl.Series([next(iter(self.classes))] * rows.height, dtype=pl.String)

    @abstractmethod
    def apply(self, table: PartedTable, batch: EventBatch) -> None:
        """Bring ``table`` from the state before ``batch`` to the state after it."""
