"""Fetching both sides: read together when small, with the same outcome as reading in order."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from settler_pipeline.adapters.spill import SpilledSide
from settler_pipeline.application import fetch
from settler_pipeline.application.fetch import fetch_sides
from settler_pipeline.application.memory import READ_TOGETHER_BYTES, read_together
from settler_pipeline.jobspec import JobSpec, SideSpec, job_spec_from_mapping

COLUMNS = {"record_id": "id", "amount": "amount", "currency": "currency", "occurred_at": "date"}
SPEC = job_spec_from_mapping(
    {
        "name": "fetch",
        "source": {"adapter": "csv", "path": "source.csv", "columns": COLUMNS},
        "target": {"adapter": "parquet", "path": "target.parquet", "columns": COLUMNS},
    },
    base_dir=Path("."),
)


@dataclass
class Progress:
    step: str = "start"


class SideFailed(Exception):
    pass


def _reader(failing: set[str], barrier: threading.Barrier | None = None) -> tuple[object, list[str]]:
    """A read that returns a marker per side (or raises for the sides in ``failing``), noting the
    thread each side ran on; with ``barrier``, each side waits for the other to be reading too."""
    threads: list[str] = []

    def read(side: str, side_spec: SideSpec) -> SpilledSide:
        threads.append(f"{side}:{threading.current_thread().name}")
        if barrier is not None:
            barrier.wait()
        if side in failing:
            raise SideFailed(f"{side} ({side_spec.adapter}) failed")
        return cast(SpilledSide, f"{side} read")

    return read, threads


def _outcome(
    spec: JobSpec, failing: set[str], *, together: bool
) -> tuple[object, str, list[tuple[str, int]]]:
    read, _threads = _reader(failing)
    progress = Progress()
    told: list[tuple[str, int]] = []
    try:
        result: object = fetch_sides(
            spec,
            read,  # type: ignore[arg-type]
            together=together,
            progress=progress,
            report=lambda what, index: told.append((what, index)),
        )
    except SideFailed as exc:
        result = str(exc)
    return result, progress.step, told


@pytest.mark.parametrize("failing", [set(), {"source"}, {"target"}, {"source", "target"}])
def test_reading_together_ends_as_reading_in_order(failing: set[str]) -> None:
    result, step, told = _outcome(SPEC, failing, together=False)
    together, together_step, together_told = _outcome(SPEC, failing, together=True)
    assert (together, together_step) == (result, step)
    both = [("reading the source (csv)", 0), ("reading the target (parquet)", 1)]
    # read in order, a failing source ends the fetch before the target is begun
    assert told == (both[:1] if "source" in failing else both) and together_told == both
    if "source" in failing:
        assert (result, step) == ("source (csv) failed", "fetch_source")
    elif "target" in failing:
        assert (result, step) == ("target (parquet) failed", "fetch_target")
    else:
        assert result == {"source": "source read", "target": "target read"}


def test_together_the_sides_are_read_at_the_same_time_on_two_threads() -> None:
    # Each side waits at the barrier for the other: read one after the other, the first would time out.
    read, threads = _reader(set(), threading.Barrier(2, timeout=10))
    spilled = fetch_sides(SPEC, read, together=True, progress=Progress(), report=lambda *_: None)  # type: ignore[arg-type]
    assert spilled == {"source": "source read", "target": "target read"}
    assert sorted(threads) == ["source:settler-read-source", f"target:{threading.main_thread().name}"]


def test_in_order_the_target_is_read_after_the_source_on_this_thread() -> None:
    read, threads = _reader(set())
    fetch_sides(SPEC, read, together=False, progress=Progress(), report=lambda *_: None)  # type: ignore[arg-type]
    main = threading.main_thread().name
    assert threads == [f"source:{main}", f"target:{main}"]


@pytest.mark.parametrize(
    ("inputs", "block_records", "together"),
    [
        ([("csv", 111_000_000), ("csv", 88_000_000)], 2_000_000, True),  # the 1M x 1M sample job
        ([("csv", READ_TOGETHER_BYTES // 2), ("csv", READ_TOGETHER_BYTES // 2 + 1)], 2_000_000, False),
        ([("csv", 555_000_000), ("csv", 440_000_000)], 2_000_000, False),  # 5M: one side at a time
        ([("csv", 1_000), ("duckdb_sql", None)], 2_000_000, False),  # a query's size is unknown
        # tiny blocks: holding both sides as read would be the run's peak, above its estimate
        ([("csv", 100_000_000), ("csv", 100_000_000)], 1_000, False),
    ],
)
def test_only_small_inputs_are_read_together(
    inputs: list[tuple[str, int | None]], block_records: int, together: bool
) -> None:
    assert read_together(inputs, block_records) is together


def _interrupted_target(source_done: threading.Event, release: threading.Event) -> object:
    """A read whose source runs until ``release`` is set, and whose target is interrupted (Ctrl-C)."""

    def read(side: str, _side_spec: SideSpec) -> SpilledSide:
        if side == "target":
            raise KeyboardInterrupt
        release.wait(30)
        source_done.set()
        return cast(SpilledSide, "source read")

    return read


def test_a_signal_ends_the_fetch_once_the_source_read_has_ended() -> None:
    # Polars cancels every new call while any call that Ctrl-C interrupted still runs: the attempt
    # records its failure with Polars, so the source's read must have ended first.
    source_done, release = threading.Event(), threading.Event()
    threading.Timer(0.3, release.set).start()
    progress = Progress()
    with pytest.raises(KeyboardInterrupt):
        fetch_sides(
            SPEC,
            _interrupted_target(source_done, release),  # type: ignore[arg-type]
            together=True,
            progress=progress,
            report=lambda *_: None,
        )
    assert source_done.is_set() and progress.step == "fetch_target"


def test_a_signal_waits_no_longer_than_the_grace_for_a_read_that_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetch, "GRACE_SECONDS", 0.2)
    source_done, release = threading.Event(), threading.Event()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            fetch_sides(
                SPEC,
                _interrupted_target(source_done, release),  # type: ignore[arg-type]
                together=True,
                progress=Progress(),
                report=lambda *_: None,
            )
        assert time.perf_counter() - started < 5 and not source_done.is_set()
    finally:
        release.set()
