"""Read models as folds: any chunking of the log gives the same tables, and they agree with the aggregate.

Histories are random but valid: several runs interleaved, each started, fetched, matched, finished
(completed, failed or cancelled), sometimes retried, and reviewed only on open items, as the command
handlers guarantee.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain import events as e
from settler_pipeline.domain import reconciliation as agg
from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.projections import NAMES
from settler_pipeline.projections.batch import EventBatch
from settler_pipeline.projections.runner import fold_batches
from tests.profiles import examples

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
TENANTS = ("0192f0c4-5d3e-7a10-8b2c-00000000000a", "0192f0c4-5d3e-7a10-8b2c-00000000000b")
REASONS = ("missing_settlement", "missing_transaction", "amount_mismatch", "ambiguous", "outside_range")


def _uuid(kind: int, n: int) -> str:
    return f"0192f0c4-{kind:04x}-7000-8000-{n:012x}"


@dataclass
class RunSimulation:
    """One run moving through its lifecycle, emitting only events the handlers would accept."""

    run_id: str
    tenant_id: str
    correlation_id: str
    rnd: random.Random
    state: agg.ReconciliationState = field(default_factory=agg.ReconciliationState)
    serial: int = 0
    done: bool = False

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def step(self) -> list[tuple[str, dict[str, Any]]]:
        """The next few events of this run (empty when it has nothing more to do)."""
        events = self._choose()
        if not events:
            self.done = True
        meta = EventMetadata(tenant_id=self.tenant_id, correlation_id=self.correlation_id)
        self.state = agg.fold(
            self.state,
            [
                EventEnvelope(
                    aggregate_id=self.run_id,
                    aggregate_type=e.AGGREGATE_TYPE,
                    event_type=event_type,
                    data=data,
                    metadata=meta,
                )
                for event_type, data in events
            ],
        )
        return events

    def _choose(self) -> list[tuple[str, dict[str, Any]]]:
        s, rnd = self.state, self.rnd
        if s.status == agg.NEW:
            return [(e.RECONCILIATION_STARTED, _started(s, self.run_id))]
        attempt = s.attempt
        if s.status in (agg.FAILED, agg.CANCELLED):
            if rnd.random() < 0.5:
                return [(e.RECONCILIATION_RETRIED, {"attempt": attempt + 1, "retried_by": "ops"})]
            return []
        if s.status == agg.COMPLETED:
            return self._review()
        roll = rnd.random()
        if roll < 0.15:
            side = rnd.choice(["source", "target"])
            event_type = e.SOURCE_RECORDS_FETCHED if side == "source" else e.TARGET_RECORDS_FETCHED
            count, quarantined = rnd.randint(0, 20), rnd.randint(0, 3)
            payload = {
                "attempt": attempt,
                "adapter": "csv",
                "count": count,
                "quarantined_count": quarantined,
                "out_of_window_count": 0,
                "total_rows": count + quarantined,
                "fetch_duration_ms": rnd.randint(1, 50),
            }
            return [(event_type, payload)]
        if roll < 0.75:
            return [self._record(attempt) for _ in range(rnd.randint(1, 6))]
        if roll < 0.85:
            return [
                (
                    e.RECONCILIATION_FAILED,
                    {
                        "attempt": attempt,
                        "error": {
                            "type": rnd.choice(["NotFoundError", "JobSpecError"]),
                            "message": f"m{self._next()}",
                        },
                        "step": rnd.choice(["fetch_source", "fetch_target", "match"]),
                        "retryable": True,
                    },
                )
            ]
        if roll < 0.9:
            return [
                (e.RECONCILIATION_CANCELLED, {"attempt": attempt, "reason": "stop", "cancelled_by": "ops"})
            ]
        summary: dict[str, Any] = {k: 0 for k in e.Summary.model_fields}
        summary.update(duration_ms=rnd.randint(1, 5000), match_rate=round(rnd.random(), 6))
        return [(e.RECONCILIATION_COMPLETED, {"attempt": attempt, "summary": summary})]

    def _record(self, attempt: int) -> tuple[str, dict[str, Any]]:
        rnd, n = self.rnd, self._next()
        side = rnd.choice(["source", "target"])
        kind = rnd.choices(["matched", "proposed", "unmatched", "duplicate", "quarantined"], [5, 2, 3, 1, 1])[
            0
        ]
        if kind in ("matched", "proposed"):
            sources = [f"s{n}-{i}" for i in range(rnd.randint(1, 2))]
            targets = [f"t{n}-{i}" for i in range(rnd.randint(1, 2))]
            amount = rnd.randint(-500, 50_000)
            payload = {
                "attempt": attempt,
                "match_id": f"m{n}",
                "rule": "exact_id" if kind == "matched" else "fuzzy",
                "match_type": "one_to_one",
                "source_ids": sources,
                "target_ids": targets,
                "amount": amount,
                "target_amount": amount - 3,
                "amount_difference": -3,
                "currency": "EUR",
                "confidence": 0.75,
                "matched_fields": ["amount"],
                "date_difference_days": 0,
            }
            return (e.RECORD_MATCHED if kind == "matched" else e.MATCH_PROPOSED, payload)
        if kind == "unmatched":
            payload = {
                "attempt": attempt,
                "side": side,
                "record_id": f"u{n}",
                "line_number": n,
                "amount": rnd.randint(1, 10_000),
                "currency": "USD",
                "occurred_at": "2026-11-01T00:00:00Z",
                "reason": rnd.choice(REASONS),
                "candidate_ids": [],
            }
            return (e.RECORD_UNMATCHED, payload)
        if kind == "duplicate":
            payload = {
                "attempt": attempt,
                "side": side,
                "record_id": f"d{n}",
                "line_number": n,
                "first_line_number": 1,
            }
            return (e.DUPLICATE_DETECTED, payload)
        reason = rnd.choice(["bad_amount: x", "missing_field: currency", "bad_date"])
        return (
            e.RECORD_QUARANTINED,
            {"attempt": attempt, "side": side, "line_number": n, "reason": reason, "raw": "a,b"},
        )

    def _review(self) -> list[tuple[str, dict[str, Any]]]:
        s, rnd = self.state, self.rnd
        proposals = sorted(s.open_proposals)
        exceptions = sorted(s.open_exceptions)
        unmatched = {
            side: sorted(x.split(":", 2)[2] for x in exceptions if x.startswith(f"unmatched:{side}:"))
            for side in ("source", "target")
        }
        options = []
        if proposals:
            options += ["confirm", "reject"]
        if exceptions:
            options.append("dismiss")
        if unmatched["source"] or unmatched["target"]:
            options.append("manual")
        if not options or rnd.random() < 0.3:
            return []
        action = rnd.choice(options)
        if action == "confirm":
            return [(e.MATCH_CONFIRMED, {"match_id": rnd.choice(proposals), "confirmed_by": "ann"})]
        if action == "reject":
            return [
                (e.MATCH_REJECTED, {"match_id": rnd.choice(proposals), "reason": "no", "rejected_by": "ann"})
            ]
        if action == "dismiss":
            return [
                (
                    e.EXCEPTION_DISMISSED,
                    {"exception_id": rnd.choice(exceptions), "reason": "fee", "dismissed_by": "ann"},
                )
            ]
        sources = rnd.sample(unmatched["source"], min(len(unmatched["source"]), rnd.randint(0, 2)))
        targets = rnd.sample(unmatched["target"], min(len(unmatched["target"]), rnd.randint(0, 2)))
        payload = {
            "match_id": f"manual{self._next()}",
            "source_ids": sources,
            "target_ids": targets,
            "note": "by hand",
            "matched_by": "bob",
        }
        return [(e.RECORDS_MANUALLY_MATCHED, payload)]


def _started(state: agg.ReconciliationState, run_id: str) -> dict[str, Any]:
    return {
        "job_id": f"job-{run_id[-2:]}",
        "source_adapter": "csv",
        "target_adapter": "csv",
        "date_range": {"start": "2026-10-01", "end": "2026-10-31"},
        "initiated_by": "alice",
        "attempt": 1,
        "spec_fingerprint": "f",
        "spec": {},
        "spec_dir": None,
    }


def random_log(rnd: random.Random, runs: int = 3, max_events: int = 120) -> pl.DataFrame:
    """A valid log of ``runs`` interleaved runs as stored rows (``EventStore.read`` columns)."""
    sims = [
        RunSimulation(_uuid(1, i), TENANTS[i % 2], _uuid(2, i), random.Random(rnd.random()))
        for i in range(runs)
    ]
    rows: list[dict[str, Any]] = []
    clock = EPOCH
    while len(rows) < max_events:
        active = [s for s in sims if not s.done]
        if not active:
            break
        sim = rnd.choice(active)
        for event_type, data in sim.step():
            # Event times mostly advance, sometimes step back (backfills), and cross UTC days.
            clock += timedelta(hours=rnd.choice([0, 1, 5, 13])) - timedelta(hours=rnd.choice([0, 0, 0, 7]))
            rows.append(
                {
                    "global_position": len(rows) + 1,
                    "aggregate_id": sim.run_id,
                    "aggregate_type": e.AGGREGATE_TYPE,
                    "event_type": event_type,
                    "event_version": 1,
                    "tenant_id": sim.tenant_id,
                    "correlation_id": sim.correlation_id,
                    "timestamp": clock,
                    "data": json.dumps(data),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "global_position": pl.Int64,
            "aggregate_id": pl.String,
            "aggregate_type": pl.String,
            "event_type": pl.String,
            "event_version": pl.Int32,
            "tenant_id": pl.String,
            "correlation_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "data": pl.String,
        },
    )


def batches(log: pl.DataFrame, cuts: list[int]) -> list[EventBatch]:
    """``log`` split at the given positions into consecutive batches (empty ones included)."""
    bounds = [0, *sorted({min(max(c, 0), log.height) for c in cuts}), log.height]
    out = []
    for after, upto in itertools.pairwise(bounds):
        part = log.filter(pl.col("global_position").is_between(after + 1, upto))
        out.append(EventBatch.from_frame(part, after=after, upto=upto))
    return out


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns)


@settings(max_examples=examples(50), deadline=None)
@given(seed=st.integers(0, 2**32), runs=st.integers(1, 4), cuts=st.lists(st.integers(0, 150), max_size=6))
def test_every_read_model_is_the_same_whatever_the_chunks_it_is_built_from(
    seed: int, runs: int, cuts: list[int]
) -> None:
    log = random_log(random.Random(seed), runs=runs)
    whole, chunked = batches(log, []), batches(log, cuts)  # decoded once, shared by every read model
    for name in NAMES:
        assert _sorted(fold_batches(name, chunked)).equals(_sorted(fold_batches(name, whole))), name


def _aggregate_states(log: pl.DataFrame) -> dict[str, agg.ReconciliationState]:
    return {
        run: agg.fold_frame(agg.ReconciliationState(), log.filter(pl.col("aggregate_id") == run))
        for run in log["aggregate_id"].unique().to_list()
    }


@settings(max_examples=examples(40), deadline=None)
@given(seed=st.integers(0, 2**32), runs=st.integers(1, 4), cuts=st.lists(st.integers(0, 150), max_size=4))
def test_summary_exceptions_and_matches_agree_with_the_aggregate(
    seed: int, runs: int, cuts: list[int]
) -> None:
    log = random_log(random.Random(seed), runs=runs)
    states = _aggregate_states(log)
    parts = batches(log, cuts)
    summary = {
        r["reconciliation_id"]: r for r in fold_batches("reconciliation_summary", parts).iter_rows(named=True)
    }
    exceptions = fold_batches("reconciliation_exceptions", parts)
    matches = fold_batches("reconciliation_matches", parts)
    assert set(summary) == set(states)
    for run, state in states.items():
        row = summary[run]
        counts = state.counts
        status = "running" if state.status in (agg.STARTED, agg.RUNNING) else state.status
        assert (row["status"], row["attempt"]) == (status, state.attempt)
        assert (row["matched"], row["proposed"]) == (counts.matched, counts.proposed)
        assert (row["unmatched_source"], row["unmatched_target"]) == (
            counts.unmatched_source,
            counts.unmatched_target,
        )
        assert (row["duplicates"], row["quarantined"]) == (counts.duplicates, counts.quarantined)
        mine = exceptions.filter(pl.col("reconciliation_id") == run)
        assert dict(mine.select("exception_id", "reason").iter_rows()) == dict(state.open_exceptions)
        runs_matches = matches.filter(pl.col("reconciliation_id") == run)
        assert set(runs_matches["attempt"].to_list()) <= {state.attempt}
        if state.status in (agg.FAILED, agg.CANCELLED, agg.ABANDONED):
            # the counts keep what the unfinished attempt found; none of its results are shown
            assert runs_matches.height == 0 and state.open_exceptions == {}
            continue
        made = runs_matches.filter(pl.col("status").is_in(["matched", "confirmed", "manual"])).height
        assert made == counts.matched
        assert runs_matches.filter(pl.col("status") == "proposed").height == counts.proposed


def test_a_retry_starts_the_counts_exceptions_and_matches_of_the_run_afresh() -> None:
    run, tenant, corr = _uuid(1, 1), TENANTS[0], _uuid(2, 1)
    sim = RunSimulation(run, tenant, corr, random.Random(1))
    history: list[tuple[str, dict[str, Any]]] = [(e.RECONCILIATION_STARTED, _started(sim.state, run))]
    proposal = {
        "attempt": 1,
        "match_id": "m1",
        "rule": "fuzzy",
        "match_type": "one_to_one",
        "source_ids": ["a"],
        "target_ids": ["b"],
        "amount": 100,
        "target_amount": 100,
        "amount_difference": 0,
        "currency": "EUR",
        "confidence": 0.8,
        "matched_fields": [],
        "date_difference_days": 0,
    }
    history += [
        (e.MATCH_PROPOSED, proposal),
        (e.RECORD_MATCHED, {**proposal, "match_id": "m2"}),
        (e.RECONCILIATION_FAILED, {"attempt": 1, "error": {"type": "X", "message": "boom"}, "step": "match"}),
        (e.RECONCILIATION_RETRIED, {"attempt": 2, "retried_by": "ops"}),
        (e.RECORD_MATCHED, {**proposal, "attempt": 2, "match_id": "m3"}),
    ]
    log = pl.DataFrame(
        {
            "global_position": list(range(1, len(history) + 1)),
            "aggregate_id": [run] * len(history),
            "aggregate_type": [e.AGGREGATE_TYPE] * len(history),
            "event_type": [t for t, _ in history],
            "event_version": [1] * len(history),
            "tenant_id": [tenant] * len(history),
            "correlation_id": [corr] * len(history),
            "timestamp": [EPOCH + timedelta(minutes=i) for i in range(len(history))],
            "data": [json.dumps(d) for _, d in history],
        },
        schema_overrides={"event_version": pl.Int32},
    )
    for cuts in ([], [3], [4]):
        parts = batches(log, cuts)
        summary = fold_batches("reconciliation_summary", parts).row(0, named=True)
        assert (summary["status"], summary["attempt"], summary["matched"], summary["proposed"]) == (
            "running",
            2,
            1,
            0,
        )
        assert summary["last_error_type"] is None and summary["completed_at"] is None
        assert fold_batches("reconciliation_exceptions", parts).height == 0
        assert fold_batches("reconciliation_matches", parts)["match_id"].to_list() == ["m3"]
        usage = fold_batches("tenant_usage_view", parts)
        assert usage.select(pl.sum("runs_started", "runs_retried", "runs_failed")).row(0) == (1, 1, 1)
        hotspots = fold_batches("error_hotspots_view", parts)
        assert hotspots.select("error_type", "step", "count").row(0) == ("X", "match", 1)


def test_a_rejected_proposal_reopens_its_records_as_unmatched_exceptions_with_their_sides() -> None:
    rnd = random.Random(5)
    log = random_log(rnd, runs=1, max_events=0)
    run, tenant, corr = _uuid(1, 9), TENANTS[1], _uuid(2, 9)
    proposal = {
        "attempt": 1,
        "match_id": "p1",
        "rule": "fuzzy",
        "match_type": "many_to_one",
        "source_ids": ["s1", "s2"],
        "target_ids": ["t1"],
        "amount": 300,
        "target_amount": 290,
        "amount_difference": -10,
        "currency": "EUR",
        "confidence": 0.7,
        "matched_fields": [],
        "date_difference_days": 1,
    }
    summary = {k: 0 for k in e.Summary.model_fields}
    history = [
        (e.RECONCILIATION_STARTED, _started(agg.ReconciliationState(), run)),
        (e.MATCH_PROPOSED, proposal),
        (e.RECONCILIATION_COMPLETED, {"attempt": 1, "summary": summary}),
        (e.MATCH_REJECTED, {"match_id": "p1", "reason": "wrong", "rejected_by": "ann"}),
    ]
    log = pl.DataFrame(
        {
            "global_position": list(range(1, 5)),
            "aggregate_id": [run] * 4,
            "aggregate_type": [e.AGGREGATE_TYPE] * 4,
            "event_type": [t for t, _ in history],
            "event_version": [1] * 4,
            "tenant_id": [tenant] * 4,
            "correlation_id": [corr] * 4,
            "timestamp": [EPOCH + timedelta(days=i) for i in range(4)],
            "data": [json.dumps(d) for _, d in history],
        },
        schema_overrides={"event_version": pl.Int32},
    )
    for cuts in ([], [2], [3]):
        exceptions = fold_batches("reconciliation_exceptions", batches(log, cuts))
        rows = exceptions.select("exception_id", "kind", "side", "record_ids", "reason", "age_days").rows()
        assert rows == [
            ("unmatched:source:s1", "unmatched", "source", ["s1"], "proposal_rejected", 0),
            ("unmatched:source:s2", "unmatched", "source", ["s2"], "proposal_rejected", 0),
            ("unmatched:target:t1", "unmatched", "target", ["t1"], "proposal_rejected", 0),
        ]
        matches = fold_batches("reconciliation_matches", batches(log, cuts))
        assert matches.select("status", "reviewed_by").row(0) == ("rejected", "ann")
        summary_row = fold_batches("reconciliation_summary", batches(log, cuts)).row(0, named=True)
        assert (
            summary_row["unmatched_source"],
            summary_row["unmatched_target"],
            summary_row["proposed"],
        ) == (2, 1, 0)
