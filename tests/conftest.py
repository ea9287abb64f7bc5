"""Shared fixtures: a store on a temporary directory and factories for envelopes and columnar batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.store.event_store import EventStore
from tests.factories import MakeEvent, MakeFrame, build_event, build_frame
from tests.profiles import PROFILE

settings.load_profile(PROFILE)  # see tests/profiles.py: `ci` for the gate, `dev` for the edit-test loop


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
