"""The matcher: validated inputs, duplicates set aside, passes run in order over what is left.

Each pass sees only records no earlier pass used (anti-joins on ``line_number``), and each pass
itself uses a record at most once, so every record ends in exactly one bucket: a match (matched or
proposed), unmatched (with a reason), or a duplicate.

Reasons of unmatched records come from the passes' hints (near misses and ties): the earliest pass
that left a hint wins, and a hint whose counterpart was matched elsewhere is ignored. Without a hint
a source record is ``missing_settlement`` and a target record ``missing_transaction``; a record read
only as margin (``in_range`` false) that stays unmatched is ``outside_range`` whatever its hints.

An amount + date pass with ``hold_near_misses`` does not see records that an earlier pass tied by
reference or group key to a counterpart that is still unmatched: amount alone is weaker evidence
than a reference, so such a pair goes to review as the near miss it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from settler_pipeline.domain.matching.amount_date import run_amount_date_pass
from settler_pipeline.domain.matching.config import AmountDatePass, MatchConfig
from settler_pipeline.domain.matching.explain import explain_unmatched
from settler_pipeline.domain.matching.fuzzy import run_fuzzy_pass
from settler_pipeline.domain.matching.group import run_group_pass
from settler_pipeline.domain.matching.margin import margin_records
from settler_pipeline.domain.matching.matches import (
    RECORD_COLUMNS,
    NameDigests,
    StagedMatches,
    hashlib_digests,
)
from settler_pipeline.domain.matching.normalise import without_placeholder_entries, without_placeholders
from settler_pipeline.domain.matching.outcome import (
    HINT_SCHEMA,
    WORK_COLUMNS,
    PassOutcome,
    held_by_near_misses,
    live_hints,
    remaining_lines,
    still_possible,
)
from settler_pipeline.domain.matching.reference import run_reference_pass
from settler_pipeline.domain.matching.result import (
    DUPLICATE_SCHEMA,
    REASON_MISSING_SETTLEMENT,
    REASON_MISSING_TRANSACTION,
    REASON_OUTSIDE_RANGE,
    STATUS_MATCHED,
    STATUS_PROPOSED,
    UNMATCHED_SCHEMA,
    MatchResult,
)
from settler_pipeline.domain.matching.split import run_split_pass
from settler_pipeline.domain.matching.tolerance import MAX_ABS_AMOUNT_MINOR
from settler_pipeline.domain.transactions import TRANSACTION_SCHEMA
from settler_pipeline.errors import SettlerError, ValidationError

_REQUIRED = ("record_id", "amount_minor", "currency", "occurred_at", "line_number", "in_range")
_OPTIONAL = ("reference", "description", "counterparty", "group_key", "references")
_NOT_NULL = ("amount_minor", "occurred_at", "line_number", "in_range")
_ID_HASH_SEED = 20261201

_RUNNERS: dict[str, Callable[[pl.DataFrame, pl.DataFrame, Any], PassOutcome]] = {
    "reference": run_reference_pass,
    "split": run_split_pass,
    "amount_date": run_amount_date_pass,
    "group": run_group_pass,
    "fuzzy": run_fuzzy_pass,
}


def match_records(
    source: pl.DataFrame,
    target: pl.DataFrame,
    config: MatchConfig,
    *,
    run_id: str,
    on_pass: Callable[[str, int, int], None] | None = None,
    digests: NameDigests = hashlib_digests,
    keep_margin_items: bool = False,
) -> MatchResult:
    """Reconcile ``source`` against ``target`` with the configured passes.

    Promises: pure (no I/O) and deterministic -- equal inputs, configuration and ``run_id`` give
    equal frames in the same order with the same match ids (uuid5 of run id, rule and the sorted
    record keys of both sides). Every input record is in exactly one bucket (see
    :meth:`MatchResult.accounting`); no record is in two matches; currencies agree in every match;
    ``fuzzy`` passes only propose. Inputs have :data:`TRANSACTION_SCHEMA` (``reference``,
    ``description``, ``counterparty``, ``group_key`` and ``raw`` may be absent); ``line_number`` must
    be unique per side. Raises :class:`ValidationError` for inputs that break that contract.
    ``on_pass(name, index, count)`` is told when each pass starts (for progress; it changes nothing);
    ``digests`` hashes the match ids' names (any :data:`NameDigests` gives the same ids).
    Only the items with a record in range are reported (see :func:`.margin.within_range`): margin
    records are counterparts like any other, so margin changes what is reported, never a pairing;
    ``keep_margin_items`` keeps the others too, for a caller that settles part of them first.
    """
    staged = stage_matches(source, target, config, run_id=run_id, on_pass=on_pass)
    return staged.built(digests, keep_margin_items=keep_margin_items)


def stage_matches(
    source: pl.DataFrame,
    target: pl.DataFrame,
    config: MatchConfig,
    *,
    run_id: str,
    on_pass: Callable[[str, int, int], None] | None = None,
    deduplicated: bool = False,
    digests: NameDigests | None = None,
) -> StagedMatches:
    """:func:`match_records` up to its match rows, which :meth:`StagedMatches.built` builds: what it
    holds of the records is only the columns those rows carry and the margin records, so a caller
    that lets go of ``source`` and ``target`` first builds the rows without every record's text
    beside them. ``deduplicated``: the caller set every repeated record id aside already (a run's
    blocks, over each whole side), so none is looked for. With ``digests``, the match rows are built
    on a second thread while the unmatched records are explained (see :meth:`StagedMatches.built`):
    both cores stay busy, but the rows and the explaining's frames are held at once (a caller that
    must keep its peak low passes none)."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValidationError("run_id must be a non-empty string", hint="pass the reconciliation run's id")
    source_in = _checked(source, "source")
    target_in = _checked(target, "target")
    source_dups = _duplicates(source_in.clear() if deduplicated else source_in, "source")
    target_dups = _duplicates(target_in.clear() if deduplicated else target_in, "target")
    source_work = _work(_without(source_in, source_dups))
    target_work = _work(_without(target_in, target_dups))

    remaining_source, remaining_target = source_work, target_work
    match_parts: list[pl.DataFrame] = []
    hint_parts: list[pl.DataFrame] = []
    for index, match_pass in enumerate(config.passes):
        if on_pass is not None:
            on_pass(match_pass.name, index, len(config.passes))
        pass_source, pass_target = remaining_source, remaining_target
        if isinstance(match_pass, AmountDatePass) and match_pass.hold_near_misses and hint_parts:
            held = held_by_near_misses(pl.concat(hint_parts), remaining_source, remaining_target)
            pass_source = remaining_source.join(
                held.filter(pl.col("side") == "source"), on="line_number", how="anti"
            )
            pass_target = remaining_target.join(
                held.filter(pl.col("side") == "target"), on="line_number", how="anti"
            )
        outcome = _RUNNERS[match_pass.kind](pass_source, pass_target, match_pass)
        auto_confirm = getattr(match_pass, "auto_confirm", False)
        match_parts.append(
            outcome.matches.with_columns(
                rule=pl.lit(match_pass.name),
                status=pl.when(pl.col("confirm") & auto_confirm)
                .then(pl.lit(STATUS_MATCHED))
                .otherwise(pl.lit(STATUS_PROPOSED)),
            ).drop("confirm")
        )
        hint_parts.append(
            outcome.hints.with_columns(priority=pl.lit(index * 10, dtype=pl.Int64) + pl.col("rank"))
        )
        used_source = outcome.matches["source_lines"].explode().implode()
        used_target = outcome.matches["target_lines"].explode().implode()
        del outcome  # its matches are also in match_parts, which build_matches lets go of as it builds
        remaining_source = remaining_source.filter(~pl.col("line_number").is_in(used_source))
        remaining_target = remaining_target.filter(~pl.col("line_number").is_in(used_target))
        hint_parts = [still_possible(part, remaining_source, remaining_target) for part in hint_parts]

    _check_used_once(pl.concat(match_parts) if match_parts else pl.DataFrame())
    hints = (
        pl.concat(hint_parts) if hint_parts else pl.DataFrame(schema={**HINT_SCHEMA, "priority": pl.Int64()})
    )
    del hint_parts

    def explained() -> pl.DataFrame:
        return _build_unmatched(
            remaining_source, remaining_target, hints, source_in, target_in, source_work, target_work, config
        )

    # Without ``digests`` the unmatched records are explained before anything else of the outcome is
    # made: the passes' raw matches (line numbers) are a fraction of the built rows, so the
    # explaining does not hold both.
    unmatched = explained() if digests is None else pl.DataFrame(schema=UNMATCHED_SCHEMA)
    staged = StagedMatches(
        parts=match_parts,
        records={"source": source_work.select(RECORD_COLUMNS), "target": target_work.select(RECORD_COLUMNS)},
        margin={"source": margin_records(source_in), "target": margin_records(target_in)},
        unmatched=unmatched,
        duplicates=pl.concat([source_dups, target_dups]).sort("side", "line_number"),
        source_input_count=source_in.height,
        target_input_count=target_in.height,
        run_id=run_id,
    )
    if digests is not None:
        # Building the rows (record lookups, then hashing the ids) needs nothing the explaining
        # changes, and both spend their time in Polars and DuckDB, off the interpreter lock.
        staged.build_in_background(digests)
        staged.unmatched = explained()
    return staged


def _checked(frame: pl.DataFrame, side: str) -> pl.DataFrame:
    """The columns the matcher reads, with the canonical dtypes, or a :class:`ValidationError`."""
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{side} records lack column(s) {', '.join(missing)}",
            hint="pass frames with settler_pipeline.domain.transactions.TRANSACTION_SCHEMA",
        )
    occurred = frame.schema["occurred_at"]
    if not isinstance(occurred, pl.Datetime) or occurred.time_zone is None:
        raise ValidationError(
            f"{side}.occurred_at must be a timezone-aware Datetime, got {occurred}",
            hint="convert times to UTC before matching",
        )
    columns = [pl.col(c) for c in _REQUIRED if c != "occurred_at"] + [
        pl.col(c) if c in frame.columns else pl.lit(None, dtype=TRANSACTION_SCHEMA[c]).alias(c)
        for c in _OPTIONAL
    ]
    try:
        checked = frame.select(
            *columns, pl.col("occurred_at").dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
        ).cast({c: TRANSACTION_SCHEMA[c] for c in (*_REQUIRED, *_OPTIONAL)})
        # Placeholders ("NOTPROVIDED", "N/A", ...) say "no reference": treated as absent everywhere.
        checked = checked.with_columns(
            reference=without_placeholders(pl.col("reference")),
            references=without_placeholder_entries(checked["references"]),
        )
    except pl.exceptions.PolarsError as e:
        raise ValidationError(
            f"{side} records do not have the canonical column types: {e}",
            hint="see settler_pipeline.domain.transactions.TRANSACTION_SCHEMA",
        ) from e
    nulls = [c for c in _NOT_NULL if checked[c].null_count()]
    if nulls:
        raise ValidationError(
            f"{side} records have nulls in {', '.join(nulls)}", hint="these fields are required"
        )
    if checked["line_number"].n_unique() != checked.height:
        raise ValidationError(
            f"{side} line_number values are not unique",
            hint="line_number identifies a record within its side",
        )
    if checked.height and int(checked["amount_minor"].abs().max()) > MAX_ABS_AMOUNT_MINOR:  # type: ignore[arg-type]
        raise ValidationError(
            f"{side} has an amount beyond {MAX_ABS_AMOUNT_MINOR} minor units",
            hint="amounts are integer minor units (cents); check the amount scale of the adapter",
        )
    return checked


def duplicate_records(frame: pl.DataFrame, side: str) -> pl.DataFrame:
    """Every occurrence of a record id after its first (by line number) in ``frame`` (``record_id``
    and ``line_number``), as :data:`DUPLICATE_SCHEMA` rows of ``side``: what the matcher sets aside."""
    return _duplicates(frame.select(pl.col("record_id").cast(pl.String), pl.col("line_number")), side)


def _duplicates(frame: pl.DataFrame, side: str) -> pl.DataFrame:
    """Every occurrence of a record id after its first (by line number) on this side."""
    # Only ids whose hash repeats can repeat (grouping integers is far cheaper than grouping
    # strings); the exact check below runs on those few rows, so a collision changes nothing.
    ids = frame.filter(pl.col("record_id").is_not_null())
    return (
        ids.filter(pl.col("record_id").hash(_ID_HASH_SEED).is_duplicated())
        .select(
            "record_id",
            "line_number",
            first_line_number=pl.col("line_number").min().over("record_id"),
        )
        .filter(pl.col("line_number") != pl.col("first_line_number"))
        .select(
            side=pl.lit(side),
            record_id="record_id",
            line_number="line_number",
            first_line_number="first_line_number",
        )
        .cast(DUPLICATE_SCHEMA)  # type: ignore[arg-type]
    )


def _without(frame: pl.DataFrame, duplicates: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without the lines of ``duplicates``; without any, ``frame`` itself (a join would
    copy every column of every record, and a run's blocks come with their duplicates already out)."""
    if duplicates.height == 0:
        return frame
    return frame.join(duplicates.select("line_number"), on="line_number", how="anti")


def _work(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame the passes see (see :data:`WORK_COLUMNS`)."""
    return frame.with_columns(day=pl.col("occurred_at").dt.date().cast(pl.Int32).cast(pl.Int64)).select(
        WORK_COLUMNS
    )


def _check_used_once(matches: pl.DataFrame) -> None:
    # Guaranteed by construction (anti-joins between passes, mutual-best within them); checked
    # because a violation would silently corrupt every downstream count.
    if matches.height == 0:
        return
    for column in ("source_lines", "target_lines"):
        lines = matches[column].explode()
        if lines.n_unique() != len(lines):
            raise SettlerError(f"internal error: a {column[:6]} record was used by two matches")


def _build_unmatched(
    remaining_source: pl.DataFrame,
    remaining_target: pl.DataFrame,
    hints: pl.DataFrame,
    source_in: pl.DataFrame,
    target_in: pl.DataFrame,
    source_work: pl.DataFrame,
    target_work: pl.DataFrame,
    config: MatchConfig,
) -> pl.DataFrame:
    live = live_hints(hints, remaining_lines(remaining_source, remaining_target))
    # Only the ids of hinted counterparts are looked up: the ids of every record would be a copy of
    # the largest text column of the block.
    ids = pl.concat(
        [
            frame.filter(
                pl.col("line_number").is_in(
                    live.filter(pl.col("other") == side)["counterpart_line"].drop_nulls().unique().implode()
                )
            ).select(side=pl.lit(side), line_number="line_number", record_id="record_id")
            for side, frame in (("source", source_in), ("target", target_in))
        ]
    )
    best = (
        live.filter(pl.col("priority") == pl.col("priority").min().over("side", "line_number"))
        .join(
            ids.rename({"side": "other", "line_number": "counterpart_line", "record_id": "counterpart_id"}),
            on=["other", "counterpart_line"],
            how="left",
        )
        .group_by("side", "line_number")
        .agg(
            pl.col("reason").first(),
            candidate_ids=pl.col("counterpart_id").drop_nulls().unique().sort(),
            counterparts=pl.col("counterpart_line").drop_nulls().unique(),
        )
    )
    records = pl.concat(
        [
            source_in.join(remaining_source.select("line_number"), on="line_number", how="semi").with_columns(
                side=pl.lit("source")
            ),
            target_in.join(remaining_target.select("line_number"), on="line_number", how="semi").with_columns(
                side=pl.lit("target")
            ),
        ]
    )
    default_reason = (
        pl.when(pl.col("side") == "source")
        .then(pl.lit(REASON_MISSING_SETTLEMENT))
        .otherwise(pl.lit(REASON_MISSING_TRANSACTION))
    )
    wanted = records.select("side", "line_number").join(
        best.select("side", "line_number", "counterparts"), on=["side", "line_number"], how="left"
    )
    explained = explain_unmatched(
        wanted.with_columns(pl.col("counterparts").fill_null(pl.lit([], dtype=pl.List(pl.Int64)))),
        source_work,
        target_work,
        remaining_source["line_number"],
        remaining_target["line_number"],
        config,
    )
    needed = explained["closest_line"].drop_nulls().unique().implode()
    closest = pl.concat(
        [
            frame.filter(pl.col("line_number").is_in(needed)).select(
                other=pl.lit(side),
                closest_line="line_number",
                closest_id="record_id",
                closest_amount_minor="amount_minor",
                closest_currency="currency",
                closest_occurred_at="occurred_at",
                closest_reference="reference",
            )
            for side, frame in (("source", source_in), ("target", target_in))
        ]
    )
    other_side = pl.when(pl.col("side") == "source").then(pl.lit("target")).otherwise(pl.lit("source"))
    explained = (
        explained.with_columns(other=other_side)
        .join(closest, on=["other", "closest_line"], how="left")
        .drop("other", "closest_line")
    )
    return (
        records.join(best.drop("counterparts"), on=["side", "line_number"], how="left")
        .join(explained, on=["side", "line_number"], how="left")
        .with_columns(
            reason=pl.when(~pl.col("in_range"))
            .then(pl.lit(REASON_OUTSIDE_RANGE))
            .otherwise(pl.col("reason").fill_null(default_reason)),
            candidate_ids=pl.when(~pl.col("in_range") | pl.col("candidate_ids").is_null())
            .then(pl.lit([], dtype=pl.List(pl.String)))
            .otherwise(pl.col("candidate_ids")),
        )
        .select(list(UNMATCHED_SCHEMA))
        .cast(UNMATCHED_SCHEMA)  # type: ignore[arg-type]
        .sort("side", "line_number")
    )
