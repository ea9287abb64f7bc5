"""Match ids built in bulk equal ``uuid.uuid5`` for any names, with either digest function."""

from __future__ import annotations

import uuid

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.domain.matching.matches import (
    MATCH_ID_NAMESPACE,
    NameDigests,
    hashlib_digests,
    uuid5_series,
)
from settler_pipeline.store.name_digests import sha1_digests

NAMES = st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=80), max_size=40)


@pytest.mark.parametrize("digests", [hashlib_digests, sha1_digests], ids=["hashlib", "duckdb"])
@given(names=NAMES)
@settings(max_examples=60, deadline=None)
def test_bulk_ids_equal_uuid5_of_each_name(digests: NameDigests, names: list[str]) -> None:
    built = uuid5_series(pl.Series(names, dtype=pl.String), digests)
    assert built.to_list() == [str(uuid.uuid5(MATCH_ID_NAMESPACE, name)) for name in names]


def test_duckdb_digests_keep_order_across_many_rows() -> None:
    names = pl.Series([f"run\x1frule\x1f{i}\x1f{i * 7}" for i in range(300_000)])
    assert (sha1_digests(b"ns", names) == hashlib_digests(b"ns", names)).all()
