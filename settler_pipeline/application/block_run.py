"""The matching part of an attempt, block by block over the spilled sides.

The sides were normalised into Parquet parts (:mod:`settler_pipeline.adapters.spill`); here
duplicates are found over each whole side, the blocks are planned from the per-day counts
(:func:`~settler_pipeline.domain.matching.blocks.plan_blocks`) and each block is read, matched and
handed back settled with the records it saw, so the caller turns it into events and appends them
before the next block is read. The run's summary is added up block by block (:class:`Tally`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import polars as pl

from settler_pipeline.adapters.spill import SpilledSide
from settler_pipeline.application import run_events
from settler_pipeline.domain import events as e
from settler_pipeline.domain.matching import MATCH_SCHEMA, UNMATCHED_SCHEMA, MatchConfig, MatchResult
from settler_pipeline.domain.matching.blocks import Block, BlockMatcher, plan_blocks, reach_days
from settler_pipeline.domain.matching.margin import within_range
from settler_pipeline.domain.matching.matcher import duplicate_records
from settler_pipeline.domain.reconciliation import match_rate
from settler_pipeline.store.name_digests import sha1_digests

SIDES = ("source", "target")
_COUNTS = (
    "matched_count",
    "proposed_count",
    "matched_source_records",
    "matched_target_records",
    "own_matched_source",
    "own_proposed_source",
    "unmatched_source_count",
    "unmatched_target_count",
)


def side_duplicates(spilled: dict[str, SpilledSide]) -> pl.DataFrame:
    """Every extra occurrence of a record id on each whole side (DUPLICATE_SCHEMA rows): all of them
    stay out of matching; :func:`reported_duplicates` says which are the run's."""
    return pl.concat(
        [
            duplicate_records(spilled[side].scan().select("record_id", "line_number").collect(), side)
            for side in SIDES
        ]
    ).sort("side", "line_number")


def reported_duplicates(spilled: dict[str, SpilledSide], duplicates: pl.DataFrame) -> MatchResult:
    """The run's duplicates as it reports them (see :func:`.margin.within_range`): those of the groups
    with an occurrence in range in ``duplicates``; the extra occurrences of a group read only as margin
    in ``unmatched``, reason ``outside_range``. All of ``duplicates`` stay out of matching."""
    records = {}
    for side in SIDES:
        mine = duplicates.filter(pl.col("side") == side)
        lines = pl.concat([mine["line_number"], mine["first_line_number"]]).implode()
        records[side] = (
            spilled[side]
            .scan()
            .filter(pl.col("line_number").is_in(lines))
            .select("line_number", "in_range", "record_id", "amount_minor", "currency", "occurred_at")
            .collect()
        )
    counts = {side: int((duplicates["side"] == side).sum()) for side in SIDES}
    found = MatchResult(
        matches=pl.DataFrame(schema=MATCH_SCHEMA),
        unmatched=pl.DataFrame(schema=UNMATCHED_SCHEMA),
        duplicates=duplicates,
        source_input_count=counts["source"],
        target_input_count=counts["target"],
        source_in_range={"matched": 0, "proposed": 0},
    )
    return within_range(found, records["source"], records["target"])


def plan_run(spilled: dict[str, SpilledSide], config: MatchConfig, block_records: int) -> list[list[Block]]:
    """The blocks of a run over ``spilled`` (see :func:`plan_blocks`)."""
    counts = (
        pl.concat([spilled[side].counts for side in SIDES])
        .group_by("currency", "day")
        .agg(pl.col("records").sum())
    )
    return plan_blocks(counts, block_records=block_records, reach=reach_days(config))


def settled_blocks(
    spilled: dict[str, SpilledSide],
    duplicates: pl.DataFrame,
    config: MatchConfig,
    plans: list[list[Block]],
    *,
    run_id: str,
    step: Callable[[str, int], None] | None = None,
) -> Iterator[tuple[MatchResult, dict[str, pl.DataFrame]]]:
    """The run's settled results block by block (``plans`` from :func:`plan_run`), each with the
    records its block matched (for the events' record details). Duplicates are left out of every
    block. ``step(what, 3)`` is told when each block and each of its passes starts."""
    excluded = {side: duplicates.filter(pl.col("side") == side)["line_number"].implode() for side in SIDES}
    count = sum(len(blocks) for blocks in plans)
    # A run whose sides are both held in memory is one block of at most ``block_records``: its match
    # rows are built beside the explaining of its unmatched records. A spilled side means a big run,
    # whose peak (its largest block) must stay where it is.
    overlap = all(spilled[side].kept is not None for side in SIDES)
    sizes = f"{spilled['source'].records:,} against {spilled['target'].records:,}"
    index = 0
    for blocks in plans:
        for position, block in enumerate(blocks):
            index += 1
            of = f" (block {index} of {count})" if count > 1 else ""
            if step is not None:
                step(f"matching {sizes}{of}", 3)
            if position == 0:
                matcher = BlockMatcher(config, run_id=run_id, digests=sha1_digests, overlap=overlap)
            matcher.on_pass = None if step is None else _pass_step(step, of)
            frames = {
                side: _without_lines(
                    spilled[side].read(block.currency, block.first_day, block.last_day, whole=block.whole),
                    excluded[side],
                )
                for side in SIDES
            }
            # Handed over, not kept: the matcher lets go of the records' text before it builds the
            # match rows, and only the records the events describe outlive the match.
            result = matcher.feed(
                frames.pop("source"),
                frames.pop("target"),
                last_day=block.last_day,
                last=position == len(blocks) - 1,
            )
            seen, matcher.seen = run_events.described_records(result, matcher.seen), {}
            yield result, seen
            del result, seen  # while the caller asks for the next block, this one is let go


def _without_lines(frame: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
    """``frame`` without the records on ``lines`` (an imploded list); with none to drop, ``frame``
    itself: a filter copies every column, and most blocks hold no duplicate."""
    if lines.list.len().sum() == 0:
        return frame
    return frame.filter(~pl.col("line_number").is_in(lines))


def _pass_step(step: Callable[[str, int], None], of: str) -> Callable[[str, int, int], None]:
    def on_pass(name: str, index: int, count: int) -> None:
        step(f"matching: pass {index + 1} of {count} ({name}){of}", 3)

    return on_pass


@dataclass
class Tally:
    """The counts of a run's summary, added up over its settled blocks."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))

    def add(self, result: MatchResult) -> None:
        """Count one settled block."""
        accounting = result.accounting()
        status = result.matches["status"]
        unmatched = result.unmatched.filter(pl.col("reason") != "outside_range")["side"]
        for key, value in (
            ("matched_count", int((status == "matched").sum())),
            ("proposed_count", int((status == "proposed").sum())),
            ("matched_source_records", accounting["source"]["matched"]),
            ("matched_target_records", accounting["target"]["matched"]),
            ("own_matched_source", result.source_in_range["matched"]),
            ("own_proposed_source", result.source_in_range["proposed"]),
            ("unmatched_source_count", int((unmatched == "source").sum())),
            ("unmatched_target_count", int((unmatched == "target").sum())),
        ):
            self.counts[key] += value

    def summary(self, spilled: dict[str, SpilledSide], duplicates: int, duration_ms: int) -> e.Summary:
        """The run's summary, summed over its blocks' results."""
        c = self.counts
        quarantined = sum(spilled[side].quarantine.height for side in SIDES)
        counted = {key: value for key, value in c.items() if not key.startswith("own_")}
        return e.Summary(
            total_source_records=spilled["source"].records + spilled["source"].quarantine.height,
            total_target_records=spilled["target"].records + spilled["target"].quarantine.height,
            **counted,
            duplicate_count=duplicates,
            quarantined_count=quarantined,
            errors_count=quarantined,
            duration_ms=duration_ms,
            match_rate=match_rate(
                c["own_matched_source"], c["own_proposed_source"], c["unmatched_source_count"]
            ),
        )
