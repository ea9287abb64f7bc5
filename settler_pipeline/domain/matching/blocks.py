"""Block-wise matching: a large input reconciled one block of records at a time.

A block holds the records of one currency over a run of consecutive days, so a run's memory is
bounded by its largest block rather than by its whole input. Every match the passes make pairs
records of one currency (a pair across currencies is only ever a ``currency_mismatch`` hint), so
splitting by currency loses no match; it does lose those hints, which is why a run small enough to
fit one block (see :func:`plan_blocks`) is matched whole.

Splitting by date needs care at the edges: a pair may straddle a block boundary. Each pass pairs
records at most :func:`reach_days` apart, so only the last ``reach`` days of a block (its *tail*)
can have a counterpart in the next one. :class:`BlockMatcher` settles what cannot be affected by
later blocks -- matches and unmatched records entirely before the tail -- and carries the rest (the
tail's records, and every record of a match that touches the tail) into the next block, where they
are matched again with their later counterparts in view. A record is settled exactly once, so no
record is ever used twice, and a pair straddling a boundary is found in the block after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from settler_pipeline.domain.matching.config import AmountDatePass, MatchConfig
from settler_pipeline.domain.matching.margin import margin_lines, source_in_range, within_range
from settler_pipeline.domain.matching.matcher import duplicate_records, stage_matches
from settler_pipeline.domain.matching.matches import NameDigests, hashlib_digests
from settler_pipeline.domain.matching.result import DUPLICATE_SCHEMA, MatchResult
from settler_pipeline.domain.matching.text_buffers import compacted


def _day() -> pl.Expr:
    """A record's UTC calendar day, as days since the epoch."""
    return pl.col("occurred_at").dt.convert_time_zone("UTC").dt.date().cast(pl.Int32).cast(pl.Int64)


def reach_days(config: MatchConfig) -> int:
    """The most days apart two records can be and still be paired or explained by any pass: the
    widest date window (either direction), widened by an amount + date pass's mismatch search."""
    reach = 0
    for match_pass in config.passes:
        window = match_pass.date_window
        extra = match_pass.mismatch_search_days if isinstance(match_pass, AmountDatePass) else 0
        reach = max(reach, window.days_before + extra, window.days_after + extra)
    return reach


@dataclass(frozen=True)
class Block:
    """The records of ``currency`` (None: records without one) on days ``first_day..last_day``
    (days since the epoch, UTC), ``records`` of them on both sides together."""

    currency: str | None
    first_day: int
    last_day: int
    records: int
    whole: bool = False  # the run's every record, currencies together


def plan_blocks(counts: pl.DataFrame, *, block_records: int, reach: int) -> list[list[Block]]:
    """The blocks of a run, one list per currency in matching order.

    ``counts`` has ``currency``, ``day`` (Int64 days since the epoch) and ``records`` (both sides).
    Consecutive days are gathered until a block holds ``block_records`` records and spans more than
    ``reach`` days (a shorter block would carry all of itself into the next). A day holding more
    than ``block_records`` records is a block of its own at least. When every record fits one block
    the whole run is one block (currencies together, so cross-currency hints are kept)."""
    if counts.height == 0:
        return []
    total = int(counts["records"].sum())
    if total <= block_records:
        first, last = counts.select(
            pl.col("day").min().alias("first"), pl.col("day").max().alias("last")
        ).row(0)
        return [[Block(None, first, last, total, whole=True)]]
    plans: list[list[Block]] = []
    per_currency = counts.group_by("currency", "day").agg(pl.col("records").sum()).sort("currency", "day")
    for (currency,), days in per_currency.group_by("currency", maintain_order=True):
        blocks: list[Block] = []
        first, size = None, 0
        for day, records in days.select("day", "records").iter_rows():
            if first is None:
                first = day
            size += records
            if size >= block_records and day - first > reach:
                blocks.append(Block(currency, first, day, size))
                first, size = None, 0
        if first is not None:
            last = int(days["day"].max())  # type: ignore[arg-type]
            blocks.append(Block(currency, first, last, size))
        plans.append(blocks)
    return plans


def block_filter(block: Block) -> pl.Expr:
    """The records of ``block``."""
    if block.whole:
        return pl.lit(True)
    currency = (
        pl.col("currency").is_null() if block.currency is None else pl.col("currency") == block.currency
    )
    return currency & _day().is_between(block.first_day, block.last_day)


class BlockMatcher:
    """Matches the date blocks of one currency in day order, carrying each block's tail into the
    next (see the module docstring). Feed every block, the last with ``last=True``."""

    def __init__(
        self,
        config: MatchConfig,
        *,
        run_id: str,
        on_pass: Callable[[str, int, int], None] | None = None,
        digests: NameDigests = hashlib_digests,
        overlap: bool = False,
    ) -> None:
        """``on_pass`` is told when each pass of each block starts and ``digests`` hashes the match
        ids (see :func:`match_records`). With ``overlap``, a block's match rows are built on a second
        thread while its unmatched records are explained (see :func:`stage_matches`): faster, but
        the rows are built beside every record of the block, so only for blocks that fit in memory
        with room to spare."""
        self.config = config
        self.digests = digests
        self.overlap = overlap
        self.run_id = run_id
        self.on_pass = on_pass
        self.reach = reach_days(config)
        self._carried: dict[str, pl.DataFrame] = {}
        self.seen: dict[str, pl.DataFrame] = {}
        """The records of the last :meth:`feed` that its events describe (those of its proposals and
        of its unmatched records, settled or carried), every column."""

    def feed(self, source: pl.DataFrame, target: pl.DataFrame, *, last_day: int, last: bool) -> MatchResult:
        """Match a block's records (and those carried from the block before) and return what is
        settled: every match and unmatched record that no later block can change (everything, with
        ``last``). Inputs must carry no duplicates (see :func:`duplicate_records`); ``last_day`` is
        the block's last day. Unless built beside the explaining (``overlap``), the match rows are
        built once this holds no more of the records than it carries, :attr:`seen` and the margin
        records: a caller that passes its only references lets go of the rest (the records' text)
        before then."""
        frames = {"source": source, "target": target}
        del source, target
        for side, carried in self._carried.items():
            frames[side] = pl.concat([carried, frames[side].select(carried.columns)], how="vertical_relaxed")
        staged = stage_matches(
            frames["source"],
            frames["target"],
            self.config,
            run_id=self.run_id,
            on_pass=self.on_pass,
            deduplicated=True,
            digests=self.digests if self.overlap else None,
        )
        self.seen = {
            side: compacted(frame.filter(pl.col("line_number").is_in(staged.described_lines(side).implode())))
            for side, frame in frames.items()
        }
        if last:
            self._carried = {}
            del frames
            # an item is the run's or not once it is settled, not before
            return staged.within_range(staged.built(self.digests, keep_margin_items=True))
        tail_from = last_day - self.reach + 1
        tail = {side: frame.filter(_day() >= tail_from)["line_number"] for side, frame in frames.items()}
        raw = (
            pl.concat([part.select("source_lines", "target_lines") for part in staged.parts])
            if staged.parts
            else pl.DataFrame(schema={"source_lines": pl.List(pl.Int64), "target_lines": pl.List(pl.Int64)})
        ).with_row_index("_m")
        touching = pl.concat(
            [
                raw.select("_m", line=f"{side}_lines")
                .explode("line")
                .filter(pl.col("line").is_in(tail[side].implode()))
                .select("_m")
                for side in ("source", "target")
            ]
        )["_m"]
        deferred = raw.filter(pl.col("_m").is_in(touching.implode()))
        del raw
        carried_lines = {
            side: pl.concat([tail[side], deferred[f"{side}_lines"].explode().drop_nulls()]).unique()
            for side in ("source", "target")
        }
        self._carried = {
            side: compacted(frame.filter(pl.col("line_number").is_in(carried_lines[side].implode())))
            for side, frame in frames.items()
        }
        del frames
        result = staged.built(self.digests, keep_margin_items=True)
        # A match is deferred when it touches the tail; its records are all carried, and no other
        # match holds a carried record, so its first line on either side tells.
        matches = result.matches.with_columns(
            _deferred=pl.col("source_lines")
            .list.first()
            .is_in(carried_lines["source"].implode())
            .fill_null(False)
            | pl.col("target_lines").list.first().is_in(carried_lines["target"].implode()).fill_null(False)
        )
        unmatched = result.unmatched.filter(
            pl.when(pl.col("side") == "source")
            .then(~pl.col("line_number").is_in(carried_lines["source"].implode()))
            .otherwise(~pl.col("line_number").is_in(carried_lines["target"].implode()))
        )
        settled = matches.filter(~pl.col("_deferred")).drop("_deferred")
        settled_result = MatchResult(
            matches=settled,
            unmatched=unmatched,
            duplicates=result.duplicates,
            source_input_count=result.source_input_count - self._carried["source"].height,
            target_input_count=result.target_input_count - self._carried["target"].height,
            source_in_range=source_in_range(settled, margin_lines(staged.margin["source"])),
        )
        return staged.within_range(settled_result)


def match_blockwise(
    source: pl.DataFrame,
    target: pl.DataFrame,
    config: MatchConfig,
    *,
    run_id: str,
    block_records: int,
) -> list[MatchResult]:
    """Match in-memory inputs block by block (as a run does from its spilled records): duplicates
    found over each whole side first, then :func:`plan_blocks` and a :class:`BlockMatcher` per
    currency. Returns the settled results in order; the first carries the duplicates."""
    duplicates = pl.concat([duplicate_records(source, "source"), duplicate_records(target, "target")])
    frames = {
        side: frame.join(
            duplicates.filter(pl.col("side") == side).select("line_number"), on="line_number", how="anti"
        )
        for side, frame in (("source", source), ("target", target))
    }
    counts = (
        pl.concat([frame.select("currency", day=_day()) for frame in frames.values()])
        .group_by("currency", "day")
        .agg(records=pl.len())
    )
    plans = plan_blocks(counts, block_records=block_records, reach=reach_days(config))
    results: list[MatchResult] = []
    for blocks in plans:
        matcher = BlockMatcher(config, run_id=run_id)
        for index, block in enumerate(blocks):
            chosen = {side: frame.filter(block_filter(block)) for side, frame in frames.items()}
            results.append(
                matcher.feed(
                    chosen.pop("source"),
                    chosen.pop("target"),
                    last_day=block.last_day,
                    last=index == len(blocks) - 1,
                )
            )
    dups = duplicates.sort("side", "line_number").cast(DUPLICATE_SCHEMA)  # type: ignore[arg-type]
    if results:
        first = results[0]
        with_dups = MatchResult(
            first.matches,
            first.unmatched,
            dups,
            first.source_input_count,
            first.target_input_count,
            first.source_in_range,
        )
        results[0] = within_range(with_dups, source, target)  # duplicate groups read only as margin
    return results
