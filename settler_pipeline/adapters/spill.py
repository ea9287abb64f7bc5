"""One side of a run, normalised in bounded slices and spilled to Parquet for block-wise matching.

A run does not hold a large side's records in memory: the input is read, then normalised
:data:`SLICE_ROWS` rows at a time, each slice's valid records counted per (currency, day) and, once
the side holds more than ``keep_records`` records, written to Parquet parts sorted by currency and
time (so a block's read skips the row groups of other currencies and days); the read text is let go
before the next side is read. A side that stays within ``keep_records`` stays in memory: writing and
reading it back would only cost time. What stays in memory otherwise is a side's quarantined rows
and its counts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.adapters.loader import read_input, resolve_columns
from settler_pipeline.adapters.normalise import normalise
from settler_pipeline.domain.transactions import QUARANTINE_SCHEMA, TRANSACTION_SCHEMA
from settler_pipeline.jobspec import DateRange, SideSpec

SLICE_ROWS = 500_000
"""Rows normalised at once: the normaliser's intermediate columns stay this size."""
WHOLE_ROWS = 1_000_000
"""Rows of a side normalised at once when the side is kept in memory (no more than that is)."""
ROW_GROUP_ROWS = 64_000
SPILLED_SCHEMA = {name: dtype for name, dtype in TRANSACTION_SCHEMA.items() if name != "raw"}
"""What a spilled record holds: a run never needs the raw row of a valid record."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RUN_FOLDER = "run-"


@contextlib.contextmanager
def spill_folder(parent: Path | None) -> Iterator[Path]:
    """A fresh folder for one run's spilled sides under ``parent`` (the data directory's ``work``
    folder; ``None``: the system's temporary folder), removed when the block ends. A process killed
    mid-run (SIGKILL, the out-of-memory killer) cannot remove its own: each new run first removes the
    folders of processes that are gone, so financial records never pile up outside the data
    directory, nor fill a memory-backed ``/tmp``."""
    if parent is None:
        with tempfile.TemporaryDirectory(prefix="settler-run-") as temporary:
            yield Path(temporary)
        return
    parent.mkdir(parents=True, exist_ok=True)
    for left in parent.glob(f"{_RUN_FOLDER}*"):
        if not _alive(left.name):
            shutil.rmtree(left, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"{_RUN_FOLDER}{os.getpid()}-", dir=parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _alive(name: str) -> bool:
    """Whether the process named in a run folder's name (``run-<pid>-...``) still exists."""
    pid = name.removeprefix(_RUN_FOLDER).split("-", 1)[0]
    if not pid.isdigit():
        return True  # not one of ours: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


@dataclass(frozen=True)
class SpilledSide:
    """One side, normalised into the Parquet parts under ``folder``.

    ``counts`` has ``currency``, ``day`` (days since the epoch, UTC) and ``records``; the other
    fields are those of :class:`~settler_pipeline.adapters.loader.LoadedSide`, with ``records`` the
    number of valid records in the parts (``total_rows == records + len(quarantine) +
    out_of_window``)."""

    folder: Path
    kept: pl.DataFrame | None
    """The side's records when they were few enough to keep in memory (None: in the parts)."""
    counts: pl.DataFrame
    records: int
    quarantine: pl.DataFrame
    total_rows: int
    out_of_window: int
    duration_ms: int

    def scan(self) -> pl.LazyFrame:
        """Every spilled record (:data:`SPILLED_SCHEMA`), lazily."""
        if self.kept is not None:
            return self.kept.lazy()
        return pl.scan_parquet(self.folder / "*.parquet")

    def read(self, currency: str | None, first_day: int, last_day: int, *, whole: bool) -> pl.DataFrame:
        """The records of ``currency`` (None: without one) on days ``first_day..last_day``
        (``whole``: every record)."""
        frame = self.scan()
        if not whole:
            start = _EPOCH + timedelta(days=first_day)
            end = _EPOCH + timedelta(days=last_day + 1)
            by_currency = pl.col("currency").is_null() if currency is None else pl.col("currency") == currency
            frame = frame.filter(
                by_currency & (pl.col("occurred_at") >= start) & (pl.col("occurred_at") < end)
            )
        return frame.collect()


def spill_side(
    spec: SideSpec,
    folder: Path,
    *,
    date_range: DateRange,
    margin_days: int,
    base_dir: Path,
    side: str,
    roots: InputRoots,
    keep_records: int,
) -> SpilledSide:
    """Read, normalise and spill one side (see the module docstring); errors as
    :func:`~settler_pipeline.adapters.loader.load_side`."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    table = read_input(spec, base_dir, roots)
    columns = resolve_columns(spec, table.columns, side=side)
    total_rows = table.total_rows
    typed_temporal = table.typed_temporal
    quarantine = [table.rejected] if table.rejected.height else []
    counts: list[pl.DataFrame] = []
    records = out_of_window = 0
    kept: list[pl.DataFrame] = []
    spilled = False
    parts = 0
    data = table.data
    del table
    # A side that will stay in memory is normalised at once: slicing it would only add a pass that
    # joins the slices again.
    rows = max(data.height, 1) if data.height <= min(keep_records, WHOLE_ROWS) else SLICE_ROWS
    for offset in range(0, data.height, rows):
        normalised = normalise(
            data.slice(offset, rows),
            spec,
            columns,
            date_range_start=date_range.start,
            date_range_end=date_range.end,
            margin_days=margin_days,
            typed_temporal=typed_temporal,
            keep_raw=False,
        )
        quarantine.append(normalised.quarantine)
        out_of_window += normalised.out_of_window
        part = normalised.records.select(list(SPILLED_SCHEMA))
        del normalised
        if part.height:
            kept.append(part)
            records += part.height
            if records > keep_records or spilled:
                # Too many to keep: what is held so far goes to disk, and so does every later slice.
                for held in kept:
                    # Sorted only here: a side kept in memory is matched in any order (the matcher's
                    # result does not depend on it), and sorting every slice gathered all its columns.
                    held.sort("currency", "occurred_at", nulls_last=True).write_parquet(
                        folder / f"part-{parts:05d}.parquet", row_group_size=ROW_GROUP_ROWS
                    )
                    parts += 1
                kept, spilled = [], True
            counts.append(
                part.group_by(
                    "currency", day=pl.col("occurred_at").dt.date().cast(pl.Int32).cast(pl.Int64)
                ).agg(records=pl.len())
            )
    del data
    return SpilledSide(
        folder=folder,
        # One chunk per column: the matcher gathers records by row (pairs, match rows) many times,
        # and a gather across chunks costs several times one within a chunk.
        kept=None if spilled else _joined(kept),
        counts=(
            pl.concat(counts).group_by("currency", "day").agg(pl.col("records").sum())
            if counts
            else pl.DataFrame(schema={"currency": pl.String(), "day": pl.Int64(), "records": pl.UInt32()})
        ),
        records=records,
        quarantine=(
            pl.concat(
                [q.select([pl.col(n).cast(t) for n, t in QUARANTINE_SCHEMA.items()]) for q in quarantine]
            ).sort("line_number")
            if quarantine
            else pl.DataFrame(schema=QUARANTINE_SCHEMA)
        ),
        total_rows=total_rows,
        out_of_window=out_of_window,
        duration_ms=round((time.perf_counter() - started) * 1000),
    )


def _joined(kept: list[pl.DataFrame]) -> pl.DataFrame:
    """The slices of a side kept in memory as one frame of one chunk per column."""
    return pl.concat(kept, rechunk=True) if kept else pl.DataFrame(schema=SPILLED_SCHEMA)
