"""Building the match frame: the passes name records by line number; a match row carries their ids,
sums, days, the match type, the differences and a deterministic match id."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from settler_pipeline.domain.matching.margin import margin_lines, source_in_range, within_range
from settler_pipeline.domain.matching.positions import LinePositions
from settler_pipeline.domain.matching.result import MATCH_SCHEMA, STATUS_PROPOSED, MatchResult

MATCH_ID_NAMESPACE = uuid.UUID("2141afa5-f648-5faf-b06c-79894d87499a")
"""uuid5 namespace of match ids (itself ``uuid5(NAMESPACE_URL, "https://settler.invalid/match")``)."""

NameDigests = Callable[[bytes, pl.Series], npt.NDArray[np.uint8]]
"""``(prefix, names) -> (len(names), 20)`` array of ``sha1(prefix + name as UTF-8)`` per name, in order."""


def hashlib_digests(prefix: bytes, names: pl.Series) -> npt.NDArray[np.uint8]:
    """:data:`NameDigests` with ``hashlib``, one call per name (the pure default; a bulk hasher from
    outside the domain gives the same bytes faster)."""
    sha1 = hashlib.sha1
    # The names as UTF-8 bytes straight from the column: no str objects, no encode per name.
    blob = b"".join([sha1(prefix + name).digest() for name in names.cast(pl.Binary).to_list()])
    return np.frombuffer(blob, dtype=np.uint8).reshape(-1, 20)


def _id_key(record_id: pl.Expr, line_number: pl.Expr) -> pl.Expr:
    """The key a record contributes to a match id: its record id (line number if it has none)."""
    return record_id.fill_null(pl.concat_str(pl.lit("#line:"), line_number.cast(pl.String)))


RECORD_COLUMNS = ("line_number", "record_id", "amount_minor", "currency", "day")
"""The columns of a side's records (the passes' work frames) that match rows carry."""


class _ByLine:
    """:data:`RECORD_COLUMNS` of a side's records, found by line number without a sorted copy of
    them (see :class:`.positions.LinePositions`)."""

    def __init__(self, work: pl.DataFrame) -> None:
        # One chunk: rows are gathered from it slice after slice, and gathering from the chunks a
        # side was read in costs several times the one copy.
        self.frame = work.select(RECORD_COLUMNS).rechunk()
        self.positions = LinePositions(self.frame["line_number"])

    def rows(self, lines: npt.NDArray[np.int64]) -> pl.DataFrame:
        """The records on ``lines`` (each present), in that order."""
        return self.frame[pl.Series(self.positions.rows(lines))]


def _single_side(matches: pl.DataFrame, records: _ByLine, side: str) -> pl.DataFrame:
    """Side columns for matches with exactly one record on ``side``, in the order of ``matches``.

    A binary search into the lines in order replaces a join: joins do not keep row order and moving
    list columns through one costs more than the rest of the matcher's bookkeeping.
    """
    rows = records.rows(matches[f"{side}_lines"].list.first().to_numpy())
    return rows.select(
        pl.concat_list("record_id").alias(f"{side}_ids"),
        pl.col("amount_minor").alias(f"{side}_amount_minor"),
        pl.col("day").alias(f"_{side}_day"),
        pl.col("currency").alias(f"_{side}_currency"),
        _id_key(pl.col("record_id"), pl.col("line_number")).alias(f"_{side}_key"),
    )


def _grouped_side(matches: pl.DataFrame, records: _ByLine, side: str) -> pl.DataFrame:
    """Side columns for any matches (several records on a side allowed), keyed by ``_m``."""
    lines = matches.select("_m", line_number=pl.col(f"{side}_lines")).explode("line_number")
    return (
        pl.concat([lines.select("_m"), records.rows(lines["line_number"].to_numpy())], how="horizontal")
        .group_by("_m")
        .agg(
            pl.col("record_id").sort_by("line_number").alias(f"{side}_ids"),
            pl.col("amount_minor").sum().alias(f"{side}_amount_minor"),
            pl.col("day").max().alias(f"_{side}_day"),
            pl.col("currency").first().alias(f"_{side}_currency"),
            _id_key(pl.col("record_id"), pl.col("line_number")).sort().str.join("\x1e").alias(f"_{side}_key"),
        )
    )


@dataclass
class StagedMatches:
    """A matcher's outcome before its match rows are built (see
    :func:`~settler_pipeline.domain.matching.matcher.stage_matches`): the passes' raw matches (one
    frame per pass: ``source_lines``, ``target_lines``, ``status`` and what the rows carry besides),
    :data:`RECORD_COLUMNS` of each side's records, each side's margin records
    (:func:`~settler_pipeline.domain.matching.margin.margin_records`), and the finished unmatched
    records and duplicates."""

    parts: list[pl.DataFrame]
    records: dict[str, pl.DataFrame]
    margin: dict[str, pl.DataFrame]
    unmatched: pl.DataFrame
    duplicates: pl.DataFrame
    source_input_count: int
    target_input_count: int
    run_id: str
    _building: Future[pl.DataFrame] | None = field(default=None, repr=False)

    def build_in_background(self, digests: NameDigests) -> None:
        """Start building the match rows (see :meth:`built`) on a thread of their own; :attr:`parts`
        stay readable meanwhile."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="match-rows")
        parts, source, target = list(self.parts), self.records["source"], self.records["target"]
        self._building = pool.submit(build_matches, parts, source, target, self.run_id, digests)
        pool.shutdown(wait=False)  # the thread ends with its one task

    def described_lines(self, side: str) -> pl.Series:
        """The lines of ``side`` that events describe with their record: those of proposals and
        those left unmatched."""
        proposed = [
            part.filter(pl.col("status") == STATUS_PROPOSED)[f"{side}_lines"].explode() for part in self.parts
        ]
        unmatched = self.unmatched.filter(pl.col("side") == side)["line_number"]
        return pl.concat([*proposed, unmatched]).drop_nulls()

    def built(
        self, digests: NameDigests = hashlib_digests, *, keep_margin_items: bool = False
    ) -> MatchResult:
        """The :class:`MatchResult` (its match rows built with :func:`build_matches`, which empties
        :attr:`parts`), only the items with a record in range unless ``keep_margin_items`` (see
        :func:`~settler_pipeline.domain.matching.matcher.match_records`). Rows already being built
        (:meth:`build_in_background`) are waited for, whatever ``digests`` (every :data:`NameDigests`
        gives the same ids)."""
        if self._building is not None:
            matches, self._building = self._building.result(), None
            self.parts.clear()
        else:
            matches = build_matches(
                self.parts, self.records["source"], self.records["target"], self.run_id, digests
            )
        self.records = {}
        result = MatchResult(
            matches=matches,
            unmatched=self.unmatched,
            duplicates=self.duplicates,
            source_input_count=self.source_input_count,
            target_input_count=self.target_input_count,
            source_in_range=source_in_range(matches, margin_lines(self.margin["source"])),
        )
        return result if keep_margin_items else self.within_range(result)

    def within_range(self, result: MatchResult) -> MatchResult:
        """:func:`~settler_pipeline.domain.matching.margin.within_range` of ``result`` (made of
        these records, or some of them), from the margin records alone: every record it looks up is
        one of them."""
        return within_range(result, self.margin["source"], self.margin["target"])


BUILD_ROWS = 250_000
"""Match rows built at once: the keys, names and digests of a block's matches exist a slice at a time."""


def build_matches(
    parts: list[pl.DataFrame],
    source_work: pl.DataFrame,
    target_work: pl.DataFrame,
    run_id: str,
    digests: NameDigests = hashlib_digests,
) -> pl.DataFrame:
    """The :data:`MATCH_SCHEMA` frame of the passes' raw matches ``parts`` (one frame per pass):
    ids, amounts, days and currency of both sides, match type, differences and the match id (uuid5
    of run id, rule and the sorted record keys of both sides, hashed with ``digests``), sorted by the
    first source line. Empties ``parts``: each slice of the raw matches is let go once it is built,
    so the built frame does not grow beside all of them."""
    # One chunk (the parts are let go right after, so never both whole): gathering list columns
    # from a chunk per pass costs about four times copying them into one chunk and gathering that.
    raw = pl.concat(parts, rechunk=True) if parts else pl.DataFrame()
    parts.clear()
    if raw.height == 0:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    # Put in order first and build :data:`BUILD_ROWS` rows at a time: sorting the built frame would
    # gather every column of it, and a whole block's record keys and names would exist at once.
    order = raw.select(
        pl.arg_sort_by(pl.col("source_lines").list.min(), pl.col("target_lines").list.min())
    ).to_series()
    pending = [raw[order.slice(offset, BUILD_ROWS)] for offset in range(0, raw.height, BUILD_ROWS)]
    del raw, order
    pending.reverse()
    sides = {"source": _ByLine(source_work), "target": _ByLine(target_work)}
    built = []
    while pending:
        built.append(_built(pending.pop(), sides, run_id, digests))
    return pl.concat(built)


def _built(raw: pl.DataFrame, sides: dict[str, _ByLine], run_id: str, digests: NameDigests) -> pl.DataFrame:
    """:func:`build_matches` of ``raw`` rows already in order."""
    raw = raw.with_row_index("_m")
    is_single = (pl.col("source_lines").list.len() == 1) & (pl.col("target_lines").list.len() == 1)
    singles = raw.filter(is_single)
    singles = pl.concat(
        [
            singles,
            _single_side(singles, sides["source"], "source"),
            _single_side(singles, sides["target"], "target"),
        ],
        how="horizontal",
    )
    groups = raw.filter(~is_single).with_columns(
        pl.col("source_lines").list.sort(), pl.col("target_lines").list.sort()
    )
    groups = groups.join(_grouped_side(groups, sides["source"], "source"), on="_m").join(
        _grouped_side(groups, sides["target"], "target"), on="_m"
    )
    # Each part is finished on its own: a column added to the two parts concatenated would first
    # copy every other column into one chunk beside it. Their ids are hashed at once.
    parts = [_with_differences(part) for part in (singles, groups.select(singles.columns))]
    del singles, groups
    names = pl.concat([_id_name(part, run_id) for part in parts])
    ids = uuid5_series(names, digests)
    finished = [
        part.with_columns(match_id=ids.slice(offset, part.height)).select("_m", *MATCH_SCHEMA)
        for part, offset in zip(parts, (0, parts[0].height), strict=True)
    ]
    # Rows of one record a side came first, in order; only a slice with others needs sorting back.
    built = pl.concat(finished) if parts[1].height else finished[0]
    built = built.sort("_m") if parts[1].height else built
    return built.drop("_m").cast(MATCH_SCHEMA)  # type: ignore[arg-type]


def _with_differences(built: pl.DataFrame) -> pl.DataFrame:
    """Match rows whose sides are found, with their match type, differences and currency."""
    return built.with_columns(
        match_type=pl.when(pl.col("source_lines").list.len() > 1)
        .then(pl.lit("many_to_one"))
        .when(pl.col("target_lines").list.len() > 1)
        .then(pl.lit("one_to_many"))
        .otherwise(pl.lit("one_to_one")),
        amount_difference_minor=pl.col("target_amount_minor") - pl.col("source_amount_minor"),
        date_difference_days=pl.col("_target_day") - pl.col("_source_day"),
        currency=pl.col("_source_currency"),
    )


def _id_name(built: pl.DataFrame, run_id: str) -> pl.Series:
    """The name each match id is the uuid5 of: run id, rule and the record keys of both sides."""
    return built.select(
        pl.concat_str(
            [pl.lit(run_id), pl.col("rule"), pl.col("_source_key"), pl.col("_target_key")], separator="\x1f"
        )
    ).to_series()


def uuid5_series(names: pl.Series, digests: NameDigests = hashlib_digests) -> pl.Series:
    """``str(uuid.uuid5(MATCH_ID_NAMESPACE, name))`` for each name, formatted in bulk from the SHA-1
    ``digests`` of namespace and name (``uuid.uuid5`` itself is several times slower at a million)."""
    # A whole-array copy of the first 16 bytes: slicing each digest would cost an object per name.
    raw = digests(MATCH_ID_NAMESPACE.bytes, names)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    # Each byte's two hex digits in one lookup: a contiguous (n, 32) array of digits, where one
    # lookup per nibble wrote every other column (about three times the cost).
    digits = _HEX_PAIRS[raw].view(np.uint8)
    text = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    for out_start, in_start, length in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        text[:, out_start : out_start + length] = digits[:, in_start : in_start + length]
    return pl.Series("match_id", text.view("S36").ravel()).cast(pl.String)


_HEX_PAIRS = np.frombuffer(b"".join(f"{byte:02x}".encode() for byte in range(256)), dtype=np.uint16)
"""The two lower-case hex digits of each byte value, as the 16-bit word that holds them in order."""
