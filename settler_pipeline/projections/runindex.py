"""The run index of a multi-part read model (``parts.py``): per run, the attempt it is at, how many of
that attempt's rows are read from the log (``logrows.py``), and the parts holding its stored rows.

An update changes the entries of a few runs (those its events name, and those sharing a part it
rewrites) out of every run the read model has seen (~12k at 10M events), so a generation stores its
index as a *base* (every run) plus *deltas* (the complete entries of the runs changed since), each a
file of the generation's directory; the files a generation keeps from the one before are hard links.
A delta's entry for a run replaces every entry of that run in the files before it. A base is written
again once there are :data:`MAX_DELTAS` deltas or they name more than a :data:`DELTA_FRACTION`-th of
the base's runs, so loading stays one base and a few small files. Writing and reading the whole index
on every update cost ~40 ms at 10M events (32k rows sorted, compressed and parsed again).

A file holds one row per run (``part`` null: its attempt and logged count) and one row per (run,
part) it has rows in (``attempt`` and ``logged`` null).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

RUN: Final = "reconciliation_id"
SCHEMA: Final = {RUN: pl.String(), "attempt": pl.Int64(), "logged": pl.Int64(), "part": pl.String()}
MAX_DELTAS: Final = 8
DELTA_FRACTION: Final = 8


@dataclass
class RunIndex:
    """``attempts``: ``reconciliation_id, attempt, logged``, one row per run; ``locations``:
    ``reconciliation_id, part``, one row per part holding rows of the run."""

    attempts: pl.DataFrame
    locations: pl.DataFrame

    @classmethod
    def empty(cls) -> RunIndex:
        return cls.from_frame(pl.DataFrame(schema=SCHEMA))

    @classmethod
    def from_frame(cls, runs: pl.DataFrame) -> RunIndex:
        """From one frame of ``reconciliation_id, attempt, logged, part`` with one row per (run, part)
        (part null for a run without rows): the layout of a generation's ``.runs.parquet``."""
        if "logged" not in runs.columns:  # a run index written before rows were read from the log
            runs = runs.with_columns(pl.lit(0, pl.Int64).alias("logged"))
        return cls(
            runs.select(RUN, "attempt", "logged").unique(RUN, keep="first"),
            runs.filter(pl.col("part").is_not_null()).select(RUN, "part").unique(),
        )

    def to_frame(self) -> pl.DataFrame:
        """The index as one frame in the layout :meth:`from_frame` reads, sorted for a stable file."""
        return (
            self.attempts.join(self.locations, on=RUN, how="full", coalesce=True)
            .with_columns(pl.col("logged").fill_null(0))
            .select(list(SCHEMA))
            .cast(SCHEMA)  # type: ignore[arg-type]
            .sort(RUN, "part", nulls_last=True)
        )

    @classmethod
    def read(cls, files: Sequence[Path]) -> RunIndex:
        """The index stored as ``files``: a base, then deltas in the order they were written."""
        base, *deltas = (pl.read_parquet(path) for path in files)
        if deltas:
            ordered = pl.concat(
                [d.with_columns(pl.lit(i, pl.Int32).alias("_file")) for i, d in enumerate(deltas)]
            )
            # each run's entry from the newest delta naming it (a run is named by its attempt row)
            newest = ordered.filter(pl.col("part").is_null()).group_by(RUN).agg(pl.col("_file").max())
            changed = ordered.join(newest, on=[RUN, "_file"], how="semi").drop("_file")
            base = pl.concat([base.join(newest.select(RUN), on=RUN, how="anti"), changed])
        entries = base.filter(pl.col("part").is_null())
        return cls(
            entries.select(RUN, "attempt", "logged"),
            base.filter(pl.col("part").is_not_null()).select(RUN, "part"),
        )

    def write(self, path: Path, runs: pl.Series | None = None) -> int:
        """Write the entries of ``runs`` (every run when None) to ``path``; returns how many runs it
        names. A run with parts but no attempt yet is named with a null attempt, as :meth:`from_frame`
        would load it."""
        attempts, locations = self.attempts, self.locations
        if runs is not None:
            wanted = runs.unique().implode()
            attempts = attempts.filter(pl.col(RUN).is_in(wanted))
            locations = locations.filter(pl.col(RUN).is_in(wanted))
        unnamed = locations.select(RUN).unique().join(attempts, on=RUN, how="anti")
        named = pl.concat(
            [
                attempts.select(RUN, "attempt", "logged"),
                unnamed.select(
                    RUN, pl.lit(None, pl.Int64).alias("attempt"), pl.lit(0, pl.Int64).alias("logged")
                ),
            ],
            how="vertical_relaxed",
        )
        rows = pl.concat(
            [
                named.with_columns(pl.lit(None, pl.String).alias("part")),
                locations.select(
                    RUN,
                    pl.lit(None, pl.Int64).alias("attempt"),
                    pl.lit(None, pl.Int64).alias("logged"),
                    "part",
                ),
            ],
            how="vertical_relaxed",
        )
        rows.select(list(SCHEMA)).cast(SCHEMA).write_parquet(path, compression="zstd", compression_level=1)  # type: ignore[arg-type]
        return named.height
