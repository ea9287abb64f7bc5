"""Shared fixtures: a store on a temporary directory and factories for envelopes and columnar batches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.store.event_store import EventStore
from tests.factories import MakeEvent, MakeFrame, build_event, build_frame

# Hypothesis profiles: `ci` (the full gate, `make test`) replays the same examples on every run so a
# red build is reproducible; `dev` (`make test-fast`) draws fresh ones to explore. Pick one with
# HYPOTHESIS_PROFILE; per-test @settings still set the example counts.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def make_event() -> MakeEvent:
    return build_event


@pytest.fixture
def make_frame() -> MakeFrame:
    return build_frame


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def registry() -> EventRegistry:
    """A registry of its own per test, so upcasters never leak between tests."""
    return EventRegistry()


@pytest.fixture
def store(data_dir: Path, registry: EventRegistry) -> Iterator[EventStore]:
    with EventStore.open(data_dir, registry=registry) as opened:
        yield opened


@pytest.fixture
def open_store(data_dir: Path, registry: EventRegistry) -> Iterator[Callable[..., EventStore]]:
    """Open further instances on the same (or another) directory; all are closed after the test."""
    opened: list[EventStore] = []

    def _open(path: Path | None = None, **kwargs: Any) -> EventStore:
        kwargs.setdefault("registry", registry)
        instance = EventStore.open(path or data_dir, **kwargs)
        opened.append(instance)
        return instance

    yield _open
    for instance in opened:
        instance.close()
