"""The command handlers on the in-memory event log: the fast tier's check of the write side.

The same handlers run on the Parquet/DuckDB store in ``tests/integration/test_reconciliation_service.py``;
here they run against :class:`InMemoryEventLog`, which the contract suite holds to the same promises.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline.application import journal
from settler_pipeline.application.access import AccessControl
from settler_pipeline.application.bus import ALL, EventBus
from settler_pipeline.application.service import ReconciliationService
from settler_pipeline.domain import commands as c
from settler_pipeline.domain import events as e
from settler_pipeline.domain.envelope import EventEnvelope
from settler_pipeline.errors import ConcurrencyError, PermissionDeniedError, StateError
from settler_pipeline.ids import new_id
from settler_pipeline.jobspec import load_job_spec
from settler_pipeline.logs import fields_of
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.store.memory import InMemoryEventLog

START, END = date(2026, 11, 2), date(2026, 11, 3)
INPUT_COLUMNS = (
    "event_id",
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "data",
    "tenant_id",
    "correlation_id",
)


@dataclass
class World:
    service: ReconciliationService
    log: InMemoryEventLog
    tenant: str
    spec_path: Path

    def start(self, user: str = "olga", **fields: object) -> c.StartReconciliation:
        spec = load_job_spec(self.spec_path)
        values: dict[str, object] = {
            "reconciliation_id": new_id(),
            "tenant_id": self.tenant,
            "user_id": user,
            "job_id": spec.name,
            "source_adapter": spec.source.adapter,
            "target_adapter": spec.target.adapter,
            "date_range": c.DateRange(start=START, end=END),
            "spec": spec.model_dump(mode="json"),
            "spec_dir": str(spec.base_dir),
        }
        values.update(fields)
        return c.StartReconciliation.model_validate(values)


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = write_sample_job(tmp_path_factory.mktemp("inputs"), records=300, start=START, days=2, seed=5)
    return path


@pytest.fixture
def world(tmp_path: Path, spec_path: Path) -> World:
    access = AccessControl(tmp_path / "data")
    tenant = access.create_tenant("acme", admin="alice").tenant_id
    access.grant("olga", tenant, "operator", by="alice")
    access.grant("vic", tenant, "viewer", by="alice")
    log = InMemoryEventLog()
    bus = EventBus()
    journal.subscribe(bus)
    return World(ReconciliationService(log, access, bus), log, tenant, spec_path)


def test_a_run_appends_its_decisions_and_completes(world: World) -> None:
    outcome = world.service.start(world.start())
    assert outcome.status == "completed" and outcome.summary is not None
    frame = world.log.stream_frame(outcome.reconciliation_id, e.AGGREGATE_TYPE)
    kinds = frame["event_type"].to_list()
    assert kinds[0] == e.RECONCILIATION_STARTED and kinds[-1] == e.RECONCILIATION_COMPLETED
    assert kinds.count(e.RECORD_MATCHED) == outcome.summary["matched_count"]
    assert frame["aggregate_version"].to_list() == list(range(1, frame.height + 1))
    assert world.log.head_position == frame.height


def test_an_idempotency_key_makes_a_repeated_command_append_nothing(world: World) -> None:
    first = world.service.start(world.start(idempotency_key="nightly-2026-11-03"))
    head = world.log.head_position
    again = world.service.start(world.start(idempotency_key="nightly-2026-11-03"))
    assert again.repeated_command and again.reconciliation_id == first.reconciliation_id
    assert world.log.head_position == head


def test_a_viewer_cannot_start_a_run_and_nothing_is_appended(world: World) -> None:
    with pytest.raises(PermissionDeniedError):
        world.service.start(world.start(user="vic"))
    assert world.log.head_position == 0


def test_a_queued_run_can_be_cancelled_then_retried_to_completion(world: World) -> None:
    queued = world.service.start(world.start(), execute=False)
    run = queued.reconciliation_id
    cancel = c.CancelReconciliation(
        reconciliation_id=run, tenant_id=world.tenant, user_id="olga", reason="statement not final"
    )
    assert world.service.cancel(cancel).status == "cancelled"
    with pytest.raises(StateError):
        world.service.cancel(cancel.model_copy(update={"idempotency_key": None}))
    retried = world.service.retry(
        c.RetryReconciliation(reconciliation_id=run, tenant_id=world.tenant, user_id="olga")
    )
    assert retried.status == "completed" and retried.attempt == 2


def test_the_run_as_it_stood_before_it_completed(world: World) -> None:
    outcome = world.service.start(world.start())
    started_at = int(
        world.log.read(event_types=[e.RECONCILIATION_STARTED]).collect()["global_position"].item()
    )
    past = world.service.state(outcome.reconciliation_id, user_id="vic", as_of_position=started_at)
    assert past.status == "started" and past.version == 1
    now = world.service.state(outcome.reconciliation_id, user_id="vic")
    assert now.status == "completed"


def test_a_writer_that_lost_the_race_is_refused_by_the_log(world: World) -> None:
    outcome = world.service.start(world.start())
    frame = world.log.stream_frame(outcome.reconciliation_id, e.AGGREGATE_TYPE)
    stale = frame.height - 1
    extra = frame.tail(1).with_columns(pl.lit(new_id()).alias("event_id"))
    with pytest.raises(ConcurrencyError):
        world.log.append_frame(
            extra.select(*INPUT_COLUMNS),
            expected_versions={outcome.reconciliation_id: stale},
        )


def test_a_failed_run_is_logged_with_its_run_tenant_and_step(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(world.spec_path.parent, moved)
    (moved / "target.csv").unlink()
    world.spec_path = moved / world.spec_path.name
    with caplog.at_level(logging.INFO, logger="settler_pipeline"):
        outcome = world.service.start(world.start())
    assert outcome.status == "failed"
    (failed,) = [r for r in caplog.records if r.levelno == logging.WARNING and "run failed" in r.message]
    fields = fields_of(failed)
    assert fields["run_id"] == outcome.reconciliation_id and fields["tenant"] == world.tenant
    assert (fields["step"], fields["error"], fields["retryable"]) == ("fetch_target", "NotFoundError", True)
    assert failed.name == "settler_pipeline.journal"


def test_a_failing_subscriber_neither_fails_the_command_nor_keeps_the_journal_from_its_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: EventEnvelope) -> None:
        raise RuntimeError("subscriber down")

    world.service.bus.subscribe(ALL, broken)
    with caplog.at_level(logging.INFO, logger="settler_pipeline"):
        outcome = world.service.start(world.start())
    assert outcome.status == "completed"
    assert outcome.publish_failures and "subscriber down" in outcome.publish_failures[0]
    journal_lines = [r for r in caplog.records if r.name == "settler_pipeline.journal"]
    assert {fields_of(r)["event"] for r in journal_lines} >= {
        "ReconciliationStarted",
        "ReconciliationCompleted",
    }
    completed = next(r for r in journal_lines if fields_of(r)["event"] == "ReconciliationCompleted")
    assert outcome.summary is not None
    assert fields_of(completed)["match_rate"] == outcome.summary["match_rate"]
