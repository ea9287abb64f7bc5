"""Short run ids: the shortest prefix (at least 8 characters, never ending on a hyphen) that tells a
run apart from every other, as git abbreviates commits."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.session import short_ids

ids = st.lists(st.uuids(version=4).map(str), min_size=1, max_size=40, unique=True)


@given(ids)
def test_each_short_id_is_a_unique_prefix_of_its_own_id_only(run_ids: list[str]) -> None:
    short = short_ids(run_ids)
    assert set(short) == set(run_ids)
    for run_id, prefix in short.items():
        assert run_id.startswith(prefix) and len(prefix) >= 8 and not prefix.endswith("-")
        assert [other for other in run_ids if other.startswith(prefix)] == [run_id]


@given(ids)
def test_a_short_id_is_as_short_as_it_can_be(run_ids: list[str]) -> None:
    for prefix in short_ids(run_ids).values():
        shorter = prefix[:-1].rstrip("-")
        if len(shorter) >= 8:
            assert sum(other.startswith(shorter) for other in run_ids) > 1


def test_time_ordered_ids_of_one_moment_still_get_distinct_prefixes() -> None:
    base = uuid.uuid4().hex
    run_ids = [str(uuid.UUID(base[:20] + f"{i:012x}")) for i in range(5)]
    short = short_ids(run_ids)
    assert len(set(short.values())) == 5
