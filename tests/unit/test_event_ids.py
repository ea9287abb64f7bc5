"""Bulk event ids: every one a well-formed time-ordered UUIDv7 of the current millisecond, unique."""

from __future__ import annotations

import time
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.store.event_ids import new_ids


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=3_000))
def test_new_ids_are_unique_canonical_uuid7_of_now(n: int) -> None:
    before = int(time.time() * 1000)
    ids = new_ids(n)
    after = int(time.time() * 1000)
    assert ids.name == "event_id"
    assert ids.len() == n and ids.null_count() == 0
    values = ids.to_list()
    assert len(set(values)) == n
    for text in values:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lower-case hex, dashes in place
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after


def test_new_ids_spread_every_random_hex_digit() -> None:
    # each of the 16 digits appears in every random position: no nibble is lost or fixed by the encoding
    ids = new_ids(4_000).to_list()
    for position in [p for p in range(13, 36) if p not in (13, 14, 18, 19, 23)]:
        assert {text[position] for text in ids} == set("0123456789abcdef"), position
