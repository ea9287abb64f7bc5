"""Adapters for real bank statements: several reference columns, reference patterns, placeholders,
per-row time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.adapters import load_side
from settler_pipeline.adapters.reasons import PREFIX
from settler_pipeline.adapters.timestamps import with_datetime
from settler_pipeline.errors import JobSpecError
from settler_pipeline.jobspec import DateOptions, DateRange, SideSpec, load_job_spec
from settler_pipeline.sample_job import write_sample_job
from tests.integration.test_adapters import csv_side, reasons

COLUMNS = {"record_id": "id", "amount": "amount", "currency": "currency", "occurred_at": "date"}


def test_any_reference_makes_every_listed_column_a_reference(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,invoice,e2e\n"
        "ch_1,1,EUR,2024-03-01,INV-1,E2E-9\n"
        "ch_2,1,EUR,2024-03-01,,E2E-8\n"
        "ch_3,1,EUR,2024-03-01,,\n",
        columns={**COLUMNS, "reference": "invoice", "any_reference": ["id", "e2e"]},
    )
    assert loaded.records["reference"].to_list() == ["INV-1", None, None]
    assert loaded.records["references"].to_list() == [["ch_1", "E2E-9"], ["ch_2", "E2E-8"], ["ch_3"]]


def test_placeholders_are_no_reference_and_the_list_is_extendable(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,ref\n"
        "a,1,EUR,2024-03-01,NOTPROVIDED\n"
        "b,1,EUR,2024-03-01,n/a\n"
        "c,1,EUR,2024-03-01,KEINE ANGABE\n"
        "d,1,EUR,2024-03-01,RF18 5390 0754 7034\n",
        columns={**COLUMNS, "reference": "ref"},
        reference_placeholders=["keine-angabe"],
    )
    assert loaded.records["reference"].to_list() == [None, None, None, "RF18 5390 0754 7034"]


def test_reference_patterns_pull_references_out_of_free_text(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,purpose\n"
        "a,1,EUR,2024-03-01,SVWZ+RE/INV-00123/2026 ACME\n"
        "b,1,EUR,2024-03-01,Rechnungsnr.INV00124 und INV-00125\n"
        "c,1,EUR,2024-03-01,Miete Maerz\n",
        columns={**COLUMNS, "description": "purpose"},
        reference_patterns=["INV-?\\d+"],
    )
    assert loaded.records["references"].to_list() == [["INV-00123"], ["INV00124", "INV-00125"], None]


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [("(", "not a valid regular expression"), (".*", "matches the empty string"), ("x" * 201, "longer")],
)
def test_unsafe_reference_patterns_are_refused(pattern: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SideSpec.model_validate(
            {"adapter": "csv", "path": "x.csv", "columns": COLUMNS, "reference_patterns": [pattern]}
        )


def test_each_row_may_name_its_time_zone_through_an_account_mapping(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,account\n"
        "berlin,1,EUR,2024-03-10 12:00:00,DE89370400440532013000\n"
        "newyork,1,USD,2024-03-10 12:00:00,US-CHK-1\n"
        "default,1,GBP,2024-03-10 12:00:00,\n"
        "unknown,1,GBP,2024-03-10 12:00:00,XX-1\n",
        dates={
            "format": "iso",
            "timezone": "Europe/London",
            "timezone_column": "account",
            "timezones": {"DE89370400440532013000": "Europe/Berlin", "US-CHK-1": "America/New_York"},
        },
    )
    assert dict(zip(loaded.records["record_id"], loaded.records["occurred_at"], strict=True)) == {
        "berlin": datetime(2024, 3, 10, 11, tzinfo=UTC),
        "newyork": datetime(2024, 3, 10, 16, tzinfo=UTC),  # EDT began that morning
        "default": datetime(2024, 3, 10, 12, tzinfo=UTC),
    }
    assert len(reasons(loaded)) == 1 and "'XX-1' is not a key of dates.timezones" in reasons(loaded)[0]


def test_a_zone_column_may_hold_iana_names(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,tz\n"
        "a,1,EUR,2024-03-10 12:00:00,Asia/Tokyo\n"
        "b,1,EUR,2024-03-10 12:00:00,Mars/Base\n",
        dates={"format": "iso", "timezone_column": "tz"},
    )
    assert loaded.records["occurred_at"].to_list() == [datetime(2024, 3, 10, 3, tzinfo=UTC)]
    assert "is not an IANA time zone name" in reasons(loaded)[0]


def test_a_missing_zone_column_is_a_job_spec_error(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="timezone_column"):
        csv_side(tmp_path, "id,amount,currency,date\na,1,EUR,2024-03-10\n", dates={"timezone_column": "tz"})


def test_a_zone_mapping_needs_its_column_and_known_zones() -> None:
    with pytest.raises(ValueError, match="set timezone_column"):
        SideSpec.model_validate(
            {"adapter": "csv", "path": "x.csv", "columns": COLUMNS, "dates": {"timezones": {"a": "UTC"}}}
        )
    with pytest.raises(ValueError, match="unknown time zone"):
        SideSpec.model_validate(
            {
                "adapter": "csv",
                "path": "x.csv",
                "columns": COLUMNS,
                "dates": {"timezone_column": "a", "timezones": {"a": "Mars/Base"}},
            }
        )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_sample_job_reads_its_files_back_to_the_generated_records(tmp_path: Path, fmt: str) -> None:
    spec_path, sample = write_sample_job(tmp_path, records=3_000, start=date(2026, 11, 1), days=5, fmt=fmt)  # type: ignore[arg-type]
    spec = load_job_spec(spec_path)
    everything = DateRange(start=date(2026, 10, 1), end=date(2027, 1, 31))
    for side, expected in (("source", sample.source), ("target", sample.target)):
        loaded = load_side(getattr(spec, side), date_range=everything, margin_days=0, base_dir=tmp_path)
        assert loaded.quarantine.height == 0
        columns = [c for c in expected.columns if c != "raw"]
        assert loaded.records.sort("line_number").select(columns).equals(expected.select(columns)), side


_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"]


def _oracle(local: datetime, zone: str) -> datetime | None:
    """``local`` read in ``zone`` by the standard library: the earlier instant when the time occurs
    twice, None when it does not exist (it does not come back unchanged from UTC)."""
    instant = local.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)
    if instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None) != local:
        return None
    return instant


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            # Around the 2024 clock changes of these zones, and anywhere in the year.
            st.one_of(
                st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2024, 12, 31)),
                st.sampled_from(
                    [
                        datetime(2024, 3, 31, 2, 30),
                        datetime(2024, 10, 27, 2, 30),
                        datetime(2024, 3, 10, 2, 30),
                        datetime(2024, 11, 3, 1, 30),
                        datetime(2024, 4, 7, 1, 45),
                        datetime(2024, 10, 6, 2, 15),
                    ]
                ),
            ).map(lambda d: d.replace(second=0, microsecond=0)),
            st.sampled_from([*_ZONES, None]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_each_row_is_read_in_its_own_zone_as_the_standard_library_reads_it(
    rows: list[tuple[datetime, str | None]],
) -> None:
    frame = pl.DataFrame(
        {"t": [d.strftime("%Y-%m-%d %H:%M") for d, _ in rows], "z": [z for _, z in rows]},
        schema={"t": pl.String, "z": pl.String},
    )
    options = DateOptions(format="%Y-%m-%d %H:%M", timezone="Europe/London")
    parsed = with_datetime(frame, "t", options, "at", zone_col="z")
    expected = [_oracle(d, z or "Europe/London") for d, z in rows]
    assert parsed[f"{PREFIX}value_at"].to_list() == expected
    gaps = parsed[f"{PREFIX}reason_at"].to_list()
    assert [g is not None for g in gaps] == [e is None for e in expected]
