"""One attempt of a run, executed: read both sides, record what was read, match, record the results.

Memory stays bounded by the largest block, not the input: each side is normalised in slices and
spilled to Parquet in a temporary folder, then matched block by block (currency x days, see
:mod:`settler_pipeline.domain.matching.blocks`), each block's events appended before the next block
is read. Every append is atomic and expects the version the attempt last saw: the fetch results
first, then each block's results in chunks of at most :data:`EVENT_CHUNK` events, then the
completion with the run's summary. A cancel that lands in between wins, and the attempt stops
without writing more. Every way it can end after the start is on the record: completed, failed (any
exception, and catchable signals), or, if the process dies, abandoned later through its lease. An
attempt that ends failed, cancelled or abandoned never counts: its end drops its results from the
run's state and read models, and a retry (its event resets the results) starts from nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.adapters.loader import input_bytes
from settler_pipeline.adapters.spill import SpilledSide, spill_folder, spill_side
from settler_pipeline.application import run_events
from settler_pipeline.application.block_run import (
    Tally,
    plan_run,
    reported_duplicates,
    settled_blocks,
    side_duplicates,
)
from settler_pipeline.application.bus import EventBus, PublishReport
from settler_pipeline.application.coverage import superseding
from settler_pipeline.application.fetch import fetch_sides
from settler_pipeline.application.memory import Inputs, check_block_memory, check_memory, read_together
from settler_pipeline.application.outcome import RunOutcome, outcome
from settler_pipeline.application.ports import Closing, Completing, EventLog
from settler_pipeline.application.prefetch import ahead
from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.envelope import EventContext, EventEnvelope, EventMetadata
from settler_pipeline.domain.matching import MatchResult
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import ConcurrencyError, SettlerError
from settler_pipeline.jobspec import DateRange, JobSpec, SideSpec
from settler_pipeline.logs import get_logger

_log = get_logger(__name__)
RUN_STEPS = 5  # read source, read target, record the reads, match and append block by block, complete
EVENT_CHUNK = 250_000
"""Most events appended at once (a block's events go in chunks): a chunk's frame and its Parquet write
exist beside the block's match rows; 500,000 events rose ~0.7 GB above them on a 5M-row input."""


class AttemptRunner:
    """Executes attempts of runs against an event log (the service owns the commands around them)."""

    def __init__(
        self,
        store: EventLog,
        bus: EventBus,
        roots: Callable[[str], InputRoots],
        *,
        load: Callable[[str], ReconciliationState],
        step: Callable[[str, int], None],
        max_memory: int | None = None,
        work_dir: Path | None = None,
        closing: Closing | None = None,
    ) -> None:
        """``roots`` gives a tenant's input roots (by tenant id); ``load`` reloads a run after another
        writer moved it; ``step`` reports progress; ``closing`` adds to a run's completion the decisions
        it takes over (see :meth:`_complete`);
        ``max_memory`` (bytes) caps the resident memory a run may use (see :mod:`.memory`);
        ``work_dir`` holds a run's spilled sides while it runs (default: the system's temporary folder)."""
        self.store = store
        self.closing = closing
        self.work_dir = work_dir
        self.bus = bus
        self.roots = roots
        self.max_memory = max_memory
        self.load = load
        self._step = step

    def run(
        self, state: ReconciliationState, spec: JobSpec, user_id: str, cause: str, failures: list[str]
    ) -> RunOutcome:
        """Fetch, match and record one attempt (see the module docstring): a cancel that lands between
        two of its appends wins, and this attempt stops without writing more."""
        progress = _Progress(state)
        ctx = self.context(state, user_id, cause)
        try:
            return self._attempt(progress, spec, ctx, failures)
        except Exception as exc:
            # Anything after the start, expected or not, ends the attempt on the record (never a run
            # left "running"); the domain decides whether a retry may help.
            return self._fail(progress, ctx, progress.step, exc)
        except BaseException as exc:
            # Ctrl-C or a termination signal: record the failure, then let the process stop.
            self._fail(progress, ctx, progress.step, exc)
            raise

    def context(self, state: ReconciliationState, user_id: str, cause: str | None) -> EventContext:
        assert state.reconciliation_id and state.tenant_id
        return EventContext(
            aggregate_id=state.reconciliation_id,
            tenant_id=state.tenant_id,
            user_id=user_id,
            correlation_id=state.correlation_id,
            causation_id=cause,
            timestamp=datetime.now(UTC),
        )

    def _attempt(
        self, progress: _Progress, spec: JobSpec, ctx: EventContext, failures: list[str]
    ) -> RunOutcome:
        started = time.perf_counter()
        state = progress.state
        assert state.reconciliation_id and state.tenant_id and state.date_range
        run_id = state.reconciliation_id
        date_range = DateRange(
            start=date.fromisoformat(state.date_range[0]), end=date.fromisoformat(state.date_range[1])
        )
        progress.step = "check_memory"
        roots = self.roots(state.tenant_id)
        inputs: Inputs = [
            (side.adapter, input_bytes(side, base_dir=spec.base_dir, roots=roots))
            for side in (spec.source, spec.target)
        ]
        check_memory(inputs, self.max_memory, block_records=spec.block_records)
        with spill_folder(self.work_dir) as work:

            def read(side: str, side_spec: SideSpec) -> SpilledSide:
                return spill_side(
                    side_spec,
                    Path(work) / side,
                    date_range=date_range,
                    margin_days=spec.date_window_days,
                    base_dir=spec.base_dir,
                    side=side,
                    roots=roots,
                    keep_records=spec.block_records // 2,
                )

            spilled = fetch_sides(
                spec,
                read,
                together=read_together(inputs, spec.block_records),
                progress=progress,
                report=self._step,
            )
            progress.step = "record_fetch"
            self._step("recording what was read", 2)
            duplicates = side_duplicates(spilled)
            reported = reported_duplicates(spilled, duplicates)
            batch = []
            for side, event_type in (
                ("source", e.SOURCE_RECORDS_FETCHED),
                ("target", e.TARGET_RECORDS_FETCHED),
            ):
                loaded = spilled[side]
                payload = e.RecordsFetched(
                    attempt=state.attempt,
                    adapter=(spec.source if side == "source" else spec.target).adapter,
                    count=loaded.records,
                    quarantined_count=loaded.quarantine.height,
                    out_of_window_count=loaded.out_of_window,
                    total_rows=loaded.total_rows,
                    fetch_duration_ms=loaded.duration_ms,
                )
                batch.append(run_events.single_event(e.NewEvent(event_type, payload), ctx))
                batch.append(run_events.quarantine_events(side, loaded.quarantine, state.attempt, ctx))
            batch.append(run_events.duplicate_events(reported.duplicates, state.attempt, ctx))
            batch.append(run_events.unmatched_events(reported, state.attempt, ctx))
            state, count = self.append(state, pl.concat(batch))
            progress.state = state
            progress.appended += count
            if state.status != agg.RUNNING:
                return outcome(state, events_appended=progress.appended)
            progress.step = "check_memory"
            plans = plan_run(spilled, spec.matching, spec.block_records)
            check_block_memory(max((b.records for bs in plans for b in bs), default=0), self.max_memory)
            progress.step = "match"
            tally = Tally()
            blocks = settled_blocks(
                spilled,
                duplicates,
                spec.matching,
                plans,
                run_id=run_id,
                step=self._step,
            )
            try:
                for result, seen in blocks:
                    progress.step = "record_results"
                    tally.add(result)
                    self._step(f"appending {result.matches.height + result.unmatched.height:,} events", 4)
                    # The next chunk is built while one is appended, unless the sides were spilled
                    # (its ~0.35 GB took a 5M-row run above 3x its input): one at a time then.
                    chunks = _event_chunks(result, state.attempt, ctx, seen)
                    kept = all(d.kept is not None for d in spilled.values())
                    for frame in ahead(chunks) if kept else chunks:
                        state, count = self.append(state, frame)
                        progress.state = state
                        progress.appended += count
                        if state.status != agg.RUNNING:
                            return outcome(state, events_appended=progress.appended)
                    del result, seen
                    progress.step = "match"
            except SettlerError as exc:
                if progress.step != "match":
                    raise
                return self._fail(progress, ctx, "match", exc)
            progress.step = "record_results"
            summary = tally.summary(
                spilled, reported.duplicates.height, int((time.perf_counter() - started) * 1000)
            )
        state, count, details = self._complete(state, summary, ctx)
        progress.appended += count
        self._step("done", RUN_STEPS)
        return outcome(
            state,
            events_appended=progress.appended,
            summary=summary.model_dump() if state.status == agg.COMPLETED else None,
            publish_failures=failures,
            details=details,
        )

    def _complete(
        self, state: ReconciliationState, summary: Any, ctx: EventContext
    ) -> tuple[ReconciliationState, int, dict[str, Any]]:
        """Append the completion and, in the same atomic batch, the supersede event of each run this
        one replaces (``state.supersedes``, see :func:`.coverage.superseding`), the review decisions
        it takes over from other runs of its job and the exceptions closed because another run matched
        their records (``closing``), under the job's start lock so that no decision falls between them:
        a crash leaves either all of it or none. A replaced run that moved
        meanwhile (a review decision) is loaded again and the batch tried again; a move of this run
        itself (a cancel) stops the attempt as any append does. Returns the run's state, the events
        appended and what the outcome says of the additions (:meth:`.Completing.details`)."""
        draft = agg.decide_completion(state, summary)
        completion = run_events.single_event(draft, ctx)
        cause = str(completion["event_id"][0])
        held = self.closing.lock(state) if self.closing is not None else contextlib.nullcontext()
        with held:
            for tries_left in (2, 1, 0):
                replaced = superseding(state, self.load, ctx.user_id or "")
                frames = [completion]
                for run, drafts in replaced:
                    frames += [run_events.single_event(d, _theirs(ctx, run, cause)) for d in drafts]
                others = {str(run.reconciliation_id): run.version for run, _ in replaced}
                adds = (
                    self.closing.completing(state, draft, set(others), ctx.user_id or "")
                    if self.closing is not None
                    else Completing()
                )
                ours = replace(ctx, causation_id=cause)
                frames += [run_events.single_event(d, ours) for d in [*adds.decisions, *adds.closed]]
                for run, drafts in adds.elsewhere:
                    frames += [run_events.single_event(d, _theirs(ctx, run, cause)) for d in drafts]
                    others[str(run.reconciliation_id)] = run.version
                try:
                    batch = pl.concat(frames, how="vertical_relaxed")
                    after, count = self.append(state, batch, others=others)
                except ConcurrencyError:
                    if not tries_left:
                        raise
                    continue
                return after, count, adds.details() if count else {}
        raise AssertionError("unreachable")

    def append(
        self, state: ReconciliationState, frame: pl.DataFrame, *, others: Mapping[str, int] | None = None
    ) -> tuple[ReconciliationState, int]:
        """Append ``frame`` (events of ``state``'s run, and of the runs in ``others`` at the versions
        given) expecting the version ``state`` saw; its events are stamped with the time of this
        append, not the attempt's start. Raises :class:`ConcurrencyError` when only one of ``others``
        moved meanwhile."""
        assert state.reconciliation_id
        frame = frame.with_columns(
            pl.lit(datetime.now(UTC), dtype=pl.Datetime("us", "UTC")).alias("timestamp")
        )
        try:
            positions = self.store.append_frame(
                frame, expected_versions={**(others or {}), state.reconciliation_id: state.version}
            )
        except ConcurrencyError:
            now = self.load(state.reconciliation_id)
            if others and now.version == state.version:
                raise
            _log.info("run changed meanwhile; this attempt stops", extra=_fields(state))
            return now, 0
        self._publish_lifecycle(frame, positions)
        own = pl.col("aggregate_id") == state.reconciliation_id
        # A run's batches are its own events (filtering would copy every column of them for nothing).
        folded = agg.fold_frame(state, frame if frame.select(own.all()).item() else frame.filter(own))
        _log.info(
            "events appended",
            extra={**_fields(folded), "events": len(positions), "head": positions[-1] if positions else None},
        )
        return folded, len(positions)

    def _publish_lifecycle(self, frame: pl.DataFrame, positions: list[int]) -> PublishReport:
        """Publish a run batch's lifecycle events (per-record events reach read models through the log;
        pushing a million of them through Python callbacks would defeat the columnar path)."""
        lifecycle = frame.with_columns(pl.Series("global_position", positions, dtype=pl.Int64)).filter(
            ~pl.col("event_type").is_in(list(e.BULK_EVENT_TYPES))
        )
        envelopes = [
            EventEnvelope(
                id=row["event_id"],
                aggregate_id=row["aggregate_id"],
                aggregate_type=row["aggregate_type"],
                event_type=row["event_type"],
                data=json.loads(row["data"]),
                metadata=EventMetadata(
                    tenant_id=row["tenant_id"],
                    user_id=row["user_id"],
                    timestamp=row["timestamp"],
                    correlation_id=row["correlation_id"],
                    causation_id=row["causation_id"],
                ),
                global_position=row["global_position"],
            )
            for row in lifecycle.iter_rows(named=True)
        ]
        return self.bus.publish(envelopes)

    def _fail(self, progress: _Progress, ctx: EventContext, step: str, exc: BaseException) -> RunOutcome:
        """Record the failure; the outcome counts every event the attempt appended, the results of
        the blocks appended before it included (read models leave those out: the attempt failed)."""
        failure = agg.decide_failure(progress.state, exc, step=step)
        # the journal (a bus subscriber) writes the failure's log line once it is in the log
        frame = run_events.single_event(failure, ctx)
        state, count = self.append(progress.state, frame)
        return outcome(state, events_appended=progress.appended + count)


@dataclass
class _Progress:
    """Where an executing attempt is: the state it last appended and the step it is in."""

    state: ReconciliationState
    step: str = "start"
    appended: int = 0  # events this attempt appended so far


def _event_chunks(
    result: MatchResult, attempt: int, ctx: EventContext, seen: dict[str, pl.DataFrame]
) -> Iterator[pl.DataFrame]:
    """A settled block's match events, then its unmatched events, built and handed out at most
    :data:`EVENT_CHUNK` at a time: a block's events as one frame would be several times the size of
    its records. The chunks run across the two kinds (the last matches and the first unmatched records
    share one), so a block's events take as few appends as their count allows: each append is a
    commit of its own."""

    def matched(rows: pl.DataFrame) -> pl.DataFrame:
        return run_events.match_events(replace(result, matches=rows), attempt, ctx, seen)

    def unmatched(rows: pl.DataFrame) -> pl.DataFrame:
        return run_events.unmatched_events(replace(result, unmatched=rows), attempt, ctx, seen)

    kinds = ((result.matches, matched), (result.unmatched, unmatched))
    total = result.matches.height + result.unmatched.height
    for start in range(0, total, EVENT_CHUNK):
        end = min(start + EVENT_CHUNK, total)
        parts, before = [], 0
        for rows, events in kinds:
            first, last = max(start - before, 0), min(end - before, rows.height)
            if first < last:
                parts.append(events(rows.slice(first, last - first)))
            before += rows.height
        # One contiguous copy here, on the thread building the chunks (see ``ahead``), rather than in
        # the store's Parquet write on the appending thread (segments.py copies a chunked frame).
        yield (parts[0] if len(parts) == 1 else pl.concat(parts)).rechunk()


def _fields(state: ReconciliationState) -> dict[str, Any]:
    """What a log line about a run carries: enough to find the run and its events."""
    return {
        "run_id": state.reconciliation_id,
        "tenant": state.tenant_id,
        "job": state.job_id,
        "attempt": state.attempt,
        "status": state.status,
    }


def _theirs(ctx: EventContext, run: ReconciliationState, cause: str) -> EventContext:
    """The context of an event a completion appends to another run: that run's stream and flow
    (correlation), caused by the completion."""
    assert run.reconciliation_id
    return replace(
        ctx, aggregate_id=run.reconciliation_id, correlation_id=run.correlation_id, causation_id=cause
    )
