"""Segment rollups: a private, derived summary of one segment file that bulk readers use instead of
reading the segment's matches row by row.

Nine events in ten of a run's log are typed ``RecordMatched`` events, and the read models need only
sums of them (how many per run, attempt and currency, how many source ids, the newest position and
time). When the store writes a segment (a bulk append, a tail flush, a compaction) in which such
matches are at least half of the rows, it also writes ``log/rollups/<segment stem>.r-<sha>.parquet``:

* one *sum row* per ``aggregate_id, tenant_id, event_version, attempt, currency`` of the segment's
  typed ``RecordMatched`` events of the reconciliation aggregate: ``rollup_rows`` (events),
  ``rollup_sources`` (source ids in them), ``global_position`` (the newest) and ``timestamp`` (the
  newest);
* every *other row* of the segment whole (``rollup_rows`` null): its envelope columns (``data`` too,
  so a reader that wants the document has it) and, for the per-record events among them
  (:data:`~settler_pipeline.domain.events.BULK_EVENT_TYPES`), as in the segment, their
  ``payload_typed`` flag and typed payload columns, which readers take instead of parsing ``data``;
  lifecycle events have ``payload_typed`` false. Rollups written before they kept typed columns
  hold every other row with ``payload_typed`` false (readers decode those rows' ``data``).

So a rollup holds the same information a reader of those sums needs, in ~6% of the rows. It is safe
because it is never the truth: it is derived from one segment file (the file name, which carries the
segment's checksum, ties it to those exact bytes: a rewritten segment has another name, so a rollup
never describes other contents), it can be rebuilt from the segment at any time
(:func:`build`), ``settler log verify`` recomputes it and compares, its own bytes are checked against
the checksum in its name before it is read, and a reader that finds no rollup for a segment (older
segments, segments mostly of other events, a crash between the segment and its rollup, a rollup
whose matches are at another event version than the reader serves) reads the segment itself. The
Delta table never names rollups: external engines see only the segments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.errors import CorruptionError
from settler_pipeline.files import removed_on_failure, replace_durably
from settler_pipeline.store.manifest import SegmentInfo
from settler_pipeline.store.payloads import SEGMENT_SCHEMA, TYPED
from settler_pipeline.store.schema import COLUMNS
from settler_pipeline.store.segments import file_sha256

FOLDER: Final = "rollups"
ROWS: Final = "rollup_rows"
SOURCES: Final = "rollup_sources"
SCHEMA: Final[dict[str, pl.DataType]] = {**SEGMENT_SCHEMA, ROWS: pl.Int64(), SOURCES: pl.Int64()}
KEYS: Final = (
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "tenant_id",
    "event_version",
    "attempt",
    "currency",
)
MIN_SHARE: Final = 0.5
"""A rollup is written when summed matches are at least this share of a segment's rows: below it, the
rollup would copy most of the segment for little gain."""
_NAME: Final = re.compile(r"^(seg-\d{12}-\d{12}-[0-9a-f]{32})\.r-([0-9a-f]{32})\.parquet$")
_VERIFIED: dict[str, tuple[int, int, int]] = {}  # path -> (inode, size, mtime) checked in this process
_FIX: Final = "delete the rollup file: it is derived, and readers then read the segment itself"


def summed() -> pl.Expr:
    """Rows a rollup keeps as sums: typed ``RecordMatched`` events of the reconciliation aggregate."""
    return (
        (pl.col("event_type") == e.RECORD_MATCHED)
        & (pl.col("aggregate_type") == e.AGGREGATE_TYPE)
        & pl.col(TYPED).fill_null(False)
    )


def build(frame: pl.DataFrame, min_share: float = 0.0, *, typed: bool = True) -> pl.DataFrame | None:
    """The rollup of a segment's rows ``frame`` (sum rows first, then the other rows in file order), or
    None when it holds no summed match or fewer than ``min_share`` of its rows. The other per-record
    events keep their typed payload columns; with ``typed`` false (the layout of rollups written
    before), every other row has only its envelope columns, ``payload_typed`` false."""
    if TYPED not in frame.columns or not {"attempt", "currency", "source_ids"} <= set(frame.columns):
        return None
    rows = frame.lazy().with_columns(summed().alias("_summed"), pl.col(TYPED).fill_null(False))
    # only per-record events keep their typed columns: the few lifecycle events' fields are many and
    # nested (writing them cost more than their documents cost readers to parse)
    bulk = {name for t in e.BULK_EVENT_TYPES for name in e.PAYLOADS[t].model_fields} if typed else set()
    fields = [name for name in frame.columns if name in bulk]
    kept_typed = pl.col(TYPED) & pl.col("event_type").is_in(e.BULK_EVENT_TYPES)
    other = rows.filter(~pl.col("_summed")).select(
        *COLUMNS,
        kept_typed.alias(TYPED) if typed else pl.lit(False).alias(TYPED),
        *(pl.when(kept_typed).then(pl.col(name)).alias(name) for name in fields),
    )
    # lazily: the filters then copy only the columns each part keeps (eagerly, ~2x the CPU)
    counted, sums, rest = pl.collect_all(
        [
            rows.select(pl.col("_summed").sum()),
            rows.filter("_summed")
            .group_by(KEYS)
            .agg(
                pl.len().cast(pl.Int64).alias(ROWS),
                pl.col("source_ids").list.len().sum().cast(pl.Int64).alias(SOURCES),
                pl.col("global_position").max(),
                pl.col("timestamp").max(),
            )
            .sort("global_position"),
            other,
        ],
        engine="in-memory",
    )
    matched = int(counted.item())
    if matched == 0 or matched < min_share * frame.height:
        return None
    # the payload columns null on every other row are left out, as a segment leaves them out
    kept = [n for n in fields if n in ("attempt", "currency") or rest[n].null_count() < rest.height]
    columns = [*COLUMNS, TYPED, *dict.fromkeys(["attempt", "currency", *kept]), ROWS, SOURCES]
    return (
        pl.concat([sums, rest], how="diagonal_relaxed")
        .select(columns)
        .cast({name: SCHEMA[name] for name in columns})
    )


def write(segment: str, frame: pl.DataFrame, rollups_dir: Path, staging_dir: Path) -> Path | None:
    """Write the rollup of segment file ``segment`` (its name) from its rows ``frame``, durably; returns
    its path (None when it gets none: see :data:`MIN_SHARE`)."""
    return place(segment, build(frame, MIN_SHARE), rollups_dir, staging_dir)


def place(segment: str, rolled: pl.DataFrame | None, rollups_dir: Path, staging_dir: Path) -> Path | None:
    """Write ``rolled`` (:func:`build` of segment file ``segment``'s rows, None when it gets no rollup)
    durably as that segment's rollup; returns its path. Building and placing are apart so a writer
    can build the rollup while the segment itself is written (the name needs the segment's)."""
    if rolled is None:
        return None
    stem = Path(segment).name.removesuffix(".parquet")
    staging = staging_dir / f"rollup-{stem}.{os.getpid()}.parquet"
    with removed_on_failure(staging):
        rolled.write_parquet(staging, compression="zstd", compression_level=1, statistics=True)
        sha = file_sha256(staging)
    rollups_dir.mkdir(parents=True, exist_ok=True)
    target = rollups_dir / f"{stem}.r-{sha[:32]}.parquet"
    replace_durably(staging, target)
    stat = target.stat()
    _VERIFIED[str(target)] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return target


def listing(rollups_dir: Path) -> dict[str, Path]:
    """Segment stem -> its rollup file, for every rollup under ``rollups_dir``."""
    try:
        names = os.listdir(rollups_dir)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            found[match.group(1)] = rollups_dir / name
    return found


def verify(path: Path) -> None:
    """Raise :class:`CorruptionError` unless the rollup's bytes match the checksum in its name (checked
    once per process per file, again if the file changes)."""
    stat = path.stat()
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(str(path)) == stamp:
        return
    match = _NAME.match(path.name)
    if match is None or not file_sha256(path).startswith(match.group(2)):
        raise CorruptionError(
            f"segment rollup {path} is damaged: its bytes do not match its checksum", hint=_FIX
        )
    _VERIFIED[str(path)] = stamp


SUM_COLUMNS: Final = (*KEYS, ROWS, SOURCES, "global_position", "timestamp")
"""The columns of a rollup's sum rows."""
_FILE: Final = "_rollup_file"


@dataclass(frozen=True)
class Rolled:
    """Which segments of a read are read through their rollups: their files (``paths``), the
    segments they replace (``segments``, relative paths) and the rollups' sum rows (``summed``,
    :data:`SUM_COLUMNS`), read once when the rollups were chosen."""

    paths: tuple[Path, ...]
    segments: frozenset[str]
    summed: pl.DataFrame

    def sums(self) -> pl.LazyFrame:
        """The sum rows of these rollups (:data:`KEYS`, the counts, newest position and time)."""
        return self.summed.lazy()

    def rows(self, columns: Sequence[str]) -> pl.LazyFrame:
        """The other rows of these rollups with ``columns`` (as the segments store them)."""
        return _scan(self.paths).filter(pl.col(ROWS).is_null()).select(columns)


def _scan(paths: Sequence[Path], file_paths: str | None = None) -> pl.LazyFrame:
    if not paths:
        return pl.LazyFrame(schema=SCHEMA)
    # the paths are files, named by the store: nothing to expand or to read partitions from
    return pl.scan_parquet(
        list(paths),
        schema=SCHEMA,
        missing_columns="insert",
        glob=False,
        hive_partitioning=False,
        include_file_paths=file_paths,
    )


def choose(
    segments: Sequence[SegmentInfo], rollups_dir: Path, *, after: int, upto: int, version: int | None
) -> Rolled:
    """The rollups to read for positions ``(after, upto]`` of ``segments`` (the committed segments that
    overlap them): those of segments wholly inside the range whose sums are all at event version
    ``version`` of ``RecordMatched`` (any, if None). Checks each chosen rollup's bytes once per process;
    a damaged one raises :class:`CorruptionError`."""
    found = listing(rollups_dir)
    chosen: list[tuple[str, Path]] = []
    for seg in segments:
        path = found.get(Path(seg.path).name.removesuffix(".parquet"))
        if path is not None and seg.first_position > after and seg.last_position <= upto:
            chosen.append((seg.path, path))
    if not chosen:
        return Rolled((), frozenset(), pl.DataFrame(schema={name: SCHEMA[name] for name in SUM_COLUMNS}))
    for _, path in chosen:
        verify(path)
    # the sum rows are read here, once: they tell which rollups are at the version served, and they
    # are what a reader of the sums gets (each scan of the rollups costs ~0.3 ms per file)
    summed = (
        _scan([p for _, p in chosen], file_paths=_FILE)
        .filter(pl.col(ROWS).is_not_null())
        .select(*SUM_COLUMNS, _FILE)
        .collect()
    )
    if version is not None:
        # a rollup summing matches of another version (the type's schema moved on since) is not used:
        # its segment is read, and its rows are upcast as any other
        other = set(summed.filter(pl.col("event_version") != version)[_FILE].unique().to_list())
        if other:
            chosen = [(s, p) for s, p in chosen if str(p) not in other]
            summed = summed.filter(~pl.col(_FILE).is_in(sorted(other)))
    return Rolled(tuple(p for _, p in chosen), frozenset(s for s, _ in chosen), summed.drop(_FILE))


def problems(segments: Sequence[SegmentInfo], segments_dir: Path, rollups_dir: Path) -> list[str]:
    """What is wrong with the rollups of ``segments`` (those that have one): damaged bytes, or contents
    other than those :func:`build` gives from the segment file (read again, whole)."""
    found = listing(rollups_dir)
    found_problems = []
    for seg in segments:
        path = found.get(Path(seg.path).name.removesuffix(".parquet"))
        if path is None:
            continue
        try:
            verify(path)
        except CorruptionError as error:
            found_problems.append(str(error))
            continue
        rows, stored = pl.read_parquet(segments_dir / seg.path), pl.read_parquet(path)
        # either layout is right: with the other rows typed, or (rollups written before) untyped
        expected = [build(rows, typed=typed) for typed in (True, False)]
        if not any(one is not None and _same(one, stored) for one in expected):
            found_problems.append(
                f"{FOLDER}/{path.name}: does not hold the sums and rows of segment {seg.path} ({_FIX})"
            )
    return found_problems


def _same(expected: pl.DataFrame, stored: pl.DataFrame) -> bool:
    # build() is deterministic (sum rows by their newest position, which no two groups share, then the
    # other rows in file order), so the two compare row for row
    if set(stored.columns) != set(expected.columns) or stored.height != expected.height:
        return False
    types = {c: SCHEMA[c] for c in expected.columns}
    return stored.select(expected.columns).cast(types).equals(expected.cast(types))  # type: ignore[arg-type]


def retire(rollups_dir: Path, retired_dir: Path, segments: Sequence[str]) -> None:
    """Move the rollups of ``segments`` (relative paths, retired by a compaction) aside."""
    found = listing(rollups_dir)
    for segment in segments:
        path = found.get(Path(segment).name.removesuffix(".parquet"))
        if path is not None:
            target = retired_dir / FOLDER / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            os.utime(target)  # kept for the grace period from now, as the retired segments
