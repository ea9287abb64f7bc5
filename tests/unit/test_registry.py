"""The event registry: versions of event types and step-by-step upcasting on read."""

from __future__ import annotations

from typing import Any

import pytest

from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.errors import SettlerError
from tests.factories import MakeEvent


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["amount_minor"] = out.pop("amount") * 100
    return out


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.add_upcaster("PaymentSeen", 1, _v1_to_v2)
    registry.add_upcaster("PaymentSeen", 2, _v2_to_v3)
    return registry


def test_an_unregistered_event_type_comes_back_unchanged(make_event: MakeEvent) -> None:
    event = make_event(event_type="Unknown", data={"amount": 1})
    assert EventRegistry().upcast(event) is event
    assert not EventRegistry().is_registered("Unknown")
    assert EventRegistry().current_version("Unknown") is None


def test_upcasters_run_step_by_step_up_to_the_current_version(
    registry: EventRegistry, make_event: MakeEvent
) -> None:
    old = make_event(event_type="PaymentSeen", data={"amount": 5}, event_version=1)
    new = registry.upcast(old)
    assert new.event_version == 3
    assert new.data == {"amount_minor": 500, "currency": "EUR"}
    assert registry.current_version("PaymentSeen") == 3


def test_upcasting_starts_at_the_stored_version(registry: EventRegistry, make_event: MakeEvent) -> None:
    mid = make_event(event_type="PaymentSeen", data={"amount": 5, "currency": "USD"}, event_version=2)
    assert registry.upcast(mid).data == {"amount_minor": 500, "currency": "USD"}


def test_an_event_at_the_current_version_is_returned_as_is(
    registry: EventRegistry, make_event: MakeEvent
) -> None:
    current = make_event(event_type="PaymentSeen", data={"amount_minor": 1}, event_version=3)
    assert registry.upcast(current) is current


def test_upcasting_leaves_the_original_envelope_alone(registry: EventRegistry, make_event: MakeEvent) -> None:
    old = make_event(event_type="PaymentSeen", data={"amount": 5}, event_version=1)
    new = registry.upcast(old)
    assert old.data == {"amount": 5} and old.event_version == 1
    assert (new.id, new.aggregate_id, new.metadata) == (old.id, old.aggregate_id, old.metadata)


def test_a_missing_step_in_the_chain_is_an_error(make_event: MakeEvent) -> None:
    registry = EventRegistry()
    registry.add_upcaster("PaymentSeen", 1, _v1_to_v2)
    registry.register("PaymentSeen", 3)
    with pytest.raises(SettlerError, match=r"PaymentSeen v2 -> v3"):
        registry.upcast(make_event(event_type="PaymentSeen", data={"amount": 1}, event_version=1))


def test_re_registering_never_lowers_the_current_version() -> None:
    registry = EventRegistry()
    registry.register("Thing", 3)
    registry.register("Thing", 1)
    assert registry.current_version("Thing") == 3
    registry.register("Thing", 4)
    assert registry.current_version("Thing") == 4


def test_the_decorator_registers_the_function_and_returns_it(make_event: MakeEvent) -> None:
    registry = EventRegistry()

    @registry.upcaster("Renamed", 1)
    def rename(data: dict[str, Any]) -> dict[str, Any]:
        return {"new_name": data["old_name"]}

    assert rename({"old_name": 1}) == {"new_name": 1}
    assert registry.is_registered("Renamed")
    upcast = registry.upcast(make_event(event_type="Renamed", data={"old_name": "x"}))
    assert (upcast.event_version, upcast.data) == (2, {"new_name": "x"})
