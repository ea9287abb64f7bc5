"""The source/target adapters on real files: every reader, every parsing option, quarantine, errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settler_pipeline.adapters import LoadedSide, load_side
from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.adapters.loader import check_side
from settler_pipeline.domain.transactions import QUARANTINE_SCHEMA, TRANSACTION_SCHEMA
from settler_pipeline.errors import JobSpecError, NotFoundError
from settler_pipeline.jobspec import DateRange, SideSpec, load_job_spec

MARCH = DateRange(start=date(2024, 3, 1), end=date(2024, 3, 31))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASIC_COLUMNS = {"record_id": "id", "amount": "amount", "currency": "currency", "occurred_at": "date"}


def side(**fields: Any) -> SideSpec:
    fields.setdefault("columns", BASIC_COLUMNS)
    return SideSpec.model_validate(fields)


def load(
    spec: SideSpec, base_dir: Path, *, date_range: DateRange = MARCH, margin_days: int = 0
) -> LoadedSide:
    loaded = load_side(spec, date_range=date_range, margin_days=margin_days, base_dir=base_dir)
    assert loaded.total_rows == loaded.records.height + loaded.quarantine.height + loaded.out_of_window
    assert loaded.records.schema == pl.Schema(TRANSACTION_SCHEMA)
    assert loaded.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    return loaded


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def csv_side(tmp_path: Path, text: str, name: str = "in.csv", **fields: Any) -> LoadedSide:
    write(tmp_path, name, text)
    margin = fields.pop("margin_days", 0)
    return load(side(adapter="csv", path=name, **fields), tmp_path, margin_days=margin)


def amounts(loaded: LoadedSide) -> list[int]:
    return loaded.records["amount_minor"].to_list()


def reasons(loaded: LoadedSide) -> list[str]:
    return loaded.quarantine["reason"].to_list()


# --- CSV basics -------------------------------------------------------------------------------------


def test_csv_rows_become_canonical_records_with_line_numbers_and_raw_json(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,note\nA1,12.34,eur,2024-03-01,first\nA2,-5.00,EUR,2024-03-02,second\n",
        columns={**BASIC_COLUMNS, "description": "note"},
    )
    rows = loaded.records.to_dicts()
    assert [r["record_id"] for r in rows] == ["A1", "A2"]
    assert amounts(loaded) == [1234, -500]
    assert [r["currency"] for r in rows] == ["EUR", "EUR"]
    assert rows[0]["occurred_at"] == datetime(2024, 3, 1, tzinfo=UTC)
    assert [r["line_number"] for r in rows] == [1, 2]
    assert json.loads(rows[0]["raw"]) == {
        "id": "A1",
        "amount": "12.34",
        "currency": "eur",
        "date": "2024-03-01",
        "note": "first",
    }
    assert rows[1]["description"] == "second"
    assert rows[0]["reference"] is None
    assert loaded.total_rows == 2
    assert loaded.duration_ms >= 0


def test_values_are_trimmed_and_blank_optional_fields_are_null(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date,ref\n  A1 , 1.00 , eur ,2024-03-01,   \n",
        columns={**BASIC_COLUMNS, "reference": "ref"},
    )
    row = loaded.records.row(0, named=True)
    assert (row["record_id"], row["amount_minor"], row["currency"], row["reference"]) == (
        "A1",
        100,
        "EUR",
        None,
    )


def test_semicolon_delimiter_with_decimal_comma_and_dot_grouping(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id;amount;currency;date\nA;1.234,56;EUR;2024-03-01\nB;-0,5;EUR;2024-03-01\nC;12,3;EUR;2024-03-01\n",
        csv={"delimiter": ";"},
        amount={"decimal_separator": ","},
    )
    assert amounts(loaded) == [123456, -50, 1230]


@pytest.mark.parametrize(
    ("separator", "text", "expected"),
    [
        (" ", "1 234 567.89", 123456789),
        ("'", "1'234.50", 123450),
        ("", "1234.50", 123450),
    ],
)
def test_thousands_separator_is_configurable(
    tmp_path: Path, separator: str, text: str, expected: int
) -> None:
    loaded = csv_side(
        tmp_path,
        f'id,amount,currency,date\nA,"{text}",EUR,2024-03-01\n',
        amount={"thousands_separator": separator},
    )
    assert amounts(loaded) == [expected]


def test_grouping_must_be_in_threes_so_a_misread_decimal_comma_is_quarantined(tmp_path: Path) -> None:
    loaded = csv_side(tmp_path, 'id,amount,currency,date\nA,"12,34",EUR,2024-03-01\n')
    assert loaded.records.height == 0
    assert reasons(loaded) == [
        "amount: cannot parse '12,34' as a decimal number (decimal separator '.', thousands separator ',')"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(12.00)", -1200),
        ("12.00-", -1200),
        ("+7.5", 750),
        ("$1,000", 100000),
        ("€ 3.10", 310),
        (".5", 50),
        ("0", 0),
        ("12.340", 1234),  # trailing zeros beyond the exponent lose nothing
    ],
)
def test_amount_notations_parse_exactly(tmp_path: Path, text: str, expected: int) -> None:
    loaded = csv_side(tmp_path, f'id,amount,currency,date\nA,"{text}",EUR,2024-03-01\n')
    assert amounts(loaded) == [expected], reasons(loaded)


@pytest.mark.parametrize(
    "text",
    ["12,3x", "abc", "-", "1.2.3", "(-5)", "--5", "1e5", "12 34", "(12", "12)", "()", "$$12", "12$", "+12-"],
)
def test_malformed_amounts_are_quarantined_with_the_value_in_the_reason(tmp_path: Path, text: str) -> None:
    loaded = csv_side(tmp_path, f'id,amount,currency,date\nA,"{text}",EUR,2024-03-01\n')
    assert loaded.records.height == 0
    assert reasons(loaded)[0].startswith(f"amount: cannot parse '{text}' as a decimal number")


def test_amounts_far_beyond_int64_are_quarantined_not_wrapped(tmp_path: Path) -> None:
    loaded = csv_side(tmp_path, "id,amount,currency,date\nA,12345678901234567890.00,EUR,2024-03-01\n")
    assert reasons(loaded) == ["amount: '12345678901234567890.00' is too large"]


def test_currency_exponents_zero_two_and_three_decimals(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\n"
        "J,1500,JPY,2024-03-01\n"
        "K,1.250,KWD,2024-03-01\n"
        "E,1.25,EUR,2024-03-01\n"
        "J2,15.5,JPY,2024-03-01\n"
        "E2,1.255,EUR,2024-03-01\n"
        "B,2.1235,BHD,2024-03-01\n",
    )
    assert dict(zip(loaded.records["record_id"], amounts(loaded), strict=True)) == {
        "J": 1500,
        "K": 1250,
        "E": 125,
    }
    assert reasons(loaded) == [
        "amount: '15.5' has 1 decimal places but JPY allows 0",
        "amount: '1.255' has 3 decimal places but EUR allows 2",
        "amount: '2.1235' has 4 decimal places but BHD allows 3",
    ]


def test_currency_exponents_can_be_extended_in_the_spec(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1.234,XTS,2024-03-01\nB,1.2345,XTS,2024-03-01\n",
        currency={"exponents": {"xts": 3}},
    )
    assert amounts(loaded) == [1234]
    assert reasons(loaded) == ["amount: '1.2345' has 4 decimal places but XTS allows 3"]


def test_minor_units_format_reads_integers_as_they_are(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        'id,amount,currency,date\nA,1234,EUR,2024-03-01\nB,-50,EUR,2024-03-01\nC,"1,000",EUR,2024-03-01\n'
        "D,12.50,EUR,2024-03-01\n",
        amount={"format": "minor_units"},
    )
    assert amounts(loaded) == [1234, -50, 1000]
    assert reasons(loaded) == [
        "amount: cannot parse '12.50' as an integer number of minor units (thousands separator ',')"
    ]


@pytest.mark.parametrize(
    ("sign", "expected"), [("as_is", [500, -300]), ("negate", [-500, 300]), ("abs", [500, 300])]
)
def test_sign_conventions(tmp_path: Path, sign: str, expected: list[int]) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,5.00,EUR,2024-03-01\nB,-3.00,EUR,2024-03-01\n",
        amount={"sign": sign},
    )
    assert amounts(loaded) == expected


def test_debit_and_credit_columns_make_one_signed_amount(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,debit,credit,currency,date\n"
        "A,,100.00,EUR,2024-03-01\n"
        "B,25.50,,EUR,2024-03-01\n"
        "C,-7.00,,EUR,2024-03-01\n"  # some banks write debits negative: still money out
        "D,,,EUR,2024-03-01\n"
        "E,x,,EUR,2024-03-01\n",
        columns={
            "record_id": "id",
            "debit": "debit",
            "credit": "credit",
            "currency": "currency",
            "occurred_at": "date",
        },
    )
    assert amounts(loaded) == [10000, -2550, -700]
    assert reasons(loaded) == [
        "amount: debit and credit are both empty",
        "debit: cannot parse 'x' as a decimal number (decimal separator '.', thousands separator ',')",
    ]


def test_debit_credit_with_negate_flips_the_convention(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,debit,credit,currency,date\nA,,100.00,EUR,2024-03-01\n",
        columns={
            "record_id": "id",
            "debit": "debit",
            "credit": "credit",
            "currency": "currency",
            "occurred_at": "date",
        },
        amount={"sign": "negate"},
    )
    assert amounts(loaded) == [-10000]


# --- dates and time zones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("%d/%m/%Y", "05/03/2024", datetime(2024, 3, 5, tzinfo=UTC)),
        ("%Y-%m-%d %H:%M:%S", "2024-03-05 14:30:00", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("%d.%m.%Y %H:%M", "05.03.2024 09:15", datetime(2024, 3, 5, 9, 15, tzinfo=UTC)),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-03-05T10:00:00+0200", datetime(2024, 3, 5, 8, tzinfo=UTC)),
        ("iso", "2024-03-05", datetime(2024, 3, 5, tzinfo=UTC)),
        ("iso", "2024-03-05T14:30:00Z", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("iso", "2024-03-05T14:30:00.250+01:00", datetime(2024, 3, 5, 13, 30, 0, 250000, tzinfo=UTC)),
        ("iso", "2024-03-05 14:30", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("iso", "2024-03-05t14:30:00 -05:00", datetime(2024, 3, 5, 19, 30, tzinfo=UTC)),
        ("epoch_seconds", "1709649000", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("epoch_millis", "1709649000123", datetime(2024, 3, 5, 14, 30, 0, 123000, tzinfo=UTC)),
    ],
)
def test_date_formats(tmp_path: Path, fmt: str, text: str, expected: datetime) -> None:
    loaded = csv_side(tmp_path, f"id,amount,currency,date\nA,1.00,EUR,{text}\n", dates={"format": fmt})
    assert loaded.records["occurred_at"].to_list() == [expected], reasons(loaded)


def test_iso_columns_may_mix_dates_times_and_offsets(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\n"
        "A,1,EUR,2024-03-05\n"
        "B,1,EUR,2024-03-05T01:02:03Z\n"
        "C,1,EUR,2024-03-05 01:02\n"
        "D,1,EUR,2024-03-05T01:02:03.5\n",
    )
    assert loaded.records["occurred_at"].to_list() == [
        datetime(2024, 3, 5, tzinfo=UTC),
        datetime(2024, 3, 5, 1, 2, 3, tzinfo=UTC),
        datetime(2024, 3, 5, 1, 2, tzinfo=UTC),
        datetime(2024, 3, 5, 1, 2, 3, 500000, tzinfo=UTC),
    ]


def test_unparseable_and_missing_dates_are_quarantined(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1,EUR,31/02/2024\nB,1,EUR,\nC,1,EUR,yesterday\n",
        dates={"format": "%d/%m/%Y"},
    )
    assert reasons(loaded) == [
        "occurred_at: '31/02/2024' cannot be parsed as a date in format '%d/%m/%Y'",
        "occurred_at: missing",
        "occurred_at: 'yesterday' cannot be parsed as a date in format '%d/%m/%Y'",
    ]


def test_epoch_values_that_are_not_integers_are_quarantined(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1,EUR,17096490001234567\nB,1,EUR,1.5\n",
        dates={"format": "epoch_seconds"},
    )
    assert [r.split("'")[1] for r in reasons(loaded)] == ["17096490001234567", "1.5"]


def test_naive_times_are_local_to_the_time_zone_across_daylight_saving(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\n"
        "winter,1,EUR,2024-03-01 12:00:00\n"
        "summer,1,EUR,2024-03-31 12:00:00\n"  # BST started at 01:00 UTC that morning
        "midnight,1,EUR,2024-03-15\n",
        dates={"format": "iso", "timezone": "Europe/London"},
        margin_days=1,
    )
    assert loaded.records["occurred_at"].to_list() == [
        datetime(2024, 3, 1, 12, tzinfo=UTC),
        datetime(2024, 3, 31, 11, tzinfo=UTC),
        datetime(2024, 3, 15, 0, tzinfo=UTC),
    ]


def test_a_date_only_value_is_midnight_in_the_time_zone(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1,EUR,15.03.2024\n",
        dates={"format": "%d.%m.%Y", "timezone": "Europe/Berlin"},
    )
    assert loaded.records["occurred_at"].to_list() == [datetime(2024, 3, 14, 23, tzinfo=UTC)]


def test_a_time_skipped_by_the_clocks_going_forward_is_quarantined(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1,EUR,2024-03-31 01:30:00\n",
        dates={"format": "%Y-%m-%d %H:%M:%S", "timezone": "Europe/London"},
    )
    assert reasons(loaded) == [
        "occurred_at: '2024-03-31 01:30:00' does not exist in Europe/London "
        "(clocks went forward: daylight-saving gap)"
    ]


def test_a_repeated_time_when_the_clocks_go_back_takes_the_earlier_instant(tmp_path: Path) -> None:
    october = DateRange(start=date(2024, 10, 1), end=date(2024, 10, 31))
    write(tmp_path, "in.csv", "id,amount,currency,date\nA,1,EUR,2024-10-27 01:30:00\n")
    spec = side(adapter="csv", path="in.csv", dates={"timezone": "Europe/London"})
    loaded = load(spec, tmp_path, date_range=october)
    # 01:30 happens twice; the first time is BST (UTC+1).
    assert loaded.records["occurred_at"].to_list() == [datetime(2024, 10, 27, 0, 30, tzinfo=UTC)]


# --- currency ---------------------------------------------------------------------------------------


def test_currency_codes_are_upper_cased_and_defaulted(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1,usd,2024-03-01\nB,1,,2024-03-01\nC,1,Gbp,2024-03-01\n",
        currency={"default": "eur"},
    )
    assert loaded.records["currency"].to_list() == ["USD", "EUR", "GBP"]


def test_a_default_currency_serves_files_without_a_currency_column(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,date\nA,1,2024-03-01\n",
        columns={"record_id": "id", "amount": "amount", "occurred_at": "date"},
        currency={"default": "JPY"},
    )
    assert loaded.records.select("currency", "amount_minor").row(0) == ("JPY", 1)


def test_invalid_or_missing_currency_codes_are_quarantined(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path, "id,amount,currency,date\nA,1,euro,2024-03-01\nB,1,,2024-03-01\nC,1,E1R,2024-03-01\n"
    )
    assert reasons(loaded) == [
        "currency: 'euro' is not an ISO 4217 code (three letters such as EUR)",
        "currency: missing (and no currency.default is set)",
        "currency: 'E1R' is not an ISO 4217 code (three letters such as EUR)",
    ]


def test_a_code_iso_4217_does_not_list_is_quarantined_naming_it_unless_the_spec_names_it(
    tmp_path: Path,
) -> None:
    text = "id,amount,currency,date\nA,1,xyz,2024-03-01\nB,1,HRK,2024-03-01\nC,1,XTS,2024-03-01\n"
    loaded = csv_side(tmp_path, text)
    assert loaded.records["currency"].to_list() == ["HRK", "XTS"]
    assert reasons(loaded) == [
        "currency: 'XYZ' is not an ISO 4217 code (a private or withdrawn code is accepted when the job "
        "spec names it under currency.exponents)"
    ]
    loaded = csv_side(tmp_path, text, currency={"exponents": {"xyz": 2}})
    assert loaded.records["currency"].to_list() == ["XYZ", "HRK", "XTS"]
    with pytest.raises(ValueError, match="'XYZ' is not an ISO 4217 currency code"):
        csv_side(tmp_path, "id,amount,date\nA,1,2024-03-01\n", currency={"default": "xyz"})


# --- ids, optional columns, candidates --------------------------------------------------------------


def test_missing_record_ids_are_quarantined_and_all_reasons_of_a_row_are_listed(tmp_path: Path) -> None:
    loaded = csv_side(tmp_path, "id,amount,currency,date\n,abc,EURO,never\n")
    assert reasons(loaded) == [
        "record_id: missing; amount: cannot parse 'abc' as a decimal number (decimal separator '.', "
        "thousands separator ','); currency: 'EURO' is not an ISO 4217 code (three letters such as EUR); "
        "occurred_at: 'never' cannot be parsed as an ISO 8601 date/time"
    ]


def test_without_a_record_id_column_ids_are_line_numbers(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "amount,currency,date\n1,EUR,2024-03-01\n2,EUR,2024-03-02\n",
        columns={"amount": "amount", "currency": "currency", "occurred_at": "date"},
    )
    assert loaded.records["record_id"].to_list() == ["line-1", "line-2"]


def test_a_list_of_columns_takes_the_first_with_a_value_and_skips_absent_ones(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,paid,issued,memo\nA,1,EUR,2024-03-05,2024-03-01,x\nB,1,EUR,,2024-03-02,\n",
        columns={**BASIC_COLUMNS, "occurred_at": ["paid", "issued"], "reference": ["not_there", "memo"]},
    )
    assert loaded.records["occurred_at"].dt.day().to_list() == [5, 2]
    assert loaded.records["reference"].to_list() == ["x", None]


def test_an_optional_column_may_be_absent(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,1,EUR,2024-03-01\n",
        columns={**BASIC_COLUMNS, "group_key": "payout", "optional": ["group_key"]},
    )
    assert loaded.records["group_key"].to_list() == [None]


# --- CSV reading options ----------------------------------------------------------------------------


def test_header_false_names_columns_by_position(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "A,1.00,EUR,2024-03-01\nB,2.00,EUR,2024-03-02\n",
        csv={"header": False},
        columns={
            "record_id": "column_1",
            "amount": "column_2",
            "currency": "column_3",
            "occurred_at": "column_4",
        },
    )
    assert amounts(loaded) == [100, 200]
    assert loaded.records["line_number"].to_list() == [1, 2]


def test_skip_rows_skips_a_preamble_before_the_header(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "Account statement\nIBAN;DE89 3704 0044 0532 0130 00\n\n"
        "id;amount;currency;date\nA;1.00;EUR;2024-03-01\n",
        csv={"delimiter": ";", "skip_rows": 3},
    )
    assert loaded.records["record_id"].to_list() == ["A"]


def test_other_encodings_are_decoded(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,amount,currency,date,who\nA,1.00,EUR,2024-03-01,Müller Café\n", "cp1252")
    spec = side(
        adapter="csv",
        path="in.csv",
        csv={"encoding": "cp1252"},
        columns={**BASIC_COLUMNS, "counterparty": "who"},
    )
    assert load(spec, tmp_path).records["counterparty"].to_list() == ["Müller Café"]


def test_a_utf8_byte_order_mark_does_not_disturb_the_first_column_name(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "\ufeffid,amount,currency,date\nA,1.00,EUR,2024-03-01\n")
    assert load(side(adapter="csv", path="in.csv"), tmp_path).records.height == 1


def test_a_file_in_the_wrong_encoding_is_a_job_spec_error_with_a_hint(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,amount,currency,date,who\nA,1.00,EUR,2024-03-01,Müller\n", "cp1252")
    with pytest.raises(JobSpecError) as info:
        load(side(adapter="csv", path="in.csv"), tmp_path)
    assert "in.csv" in info.value.message
    assert info.value.hint is not None and "csv.encoding" in info.value.hint


@pytest.mark.parametrize(
    ("encoding", "options"),
    [("utf-16", {}), ("utf-16-le", {}), ("utf-16-be", {"delimiter": ";"})],
)
def test_a_utf16_file_read_as_utf8_says_to_set_the_encoding(
    tmp_path: Path, encoding: str, options: dict[str, str]
) -> None:
    delimiter = options.get("delimiter", ",")
    write(
        tmp_path,
        "in.csv",
        f"id{delimiter}amount{delimiter}currency{delimiter}date\nA{delimiter}1{delimiter}EUR{delimiter}2024-03-01\n",
        encoding,
    )
    spec = side(adapter="csv", path="in.csv", csv=options)
    with pytest.raises(JobSpecError) as info:
        load(spec, tmp_path)
    assert "\x00" not in info.value.message
    assert info.value.hint is not None and "csv.encoding: utf-16" in info.value.hint
    assert "case-sensitive" not in info.value.hint
    fixed = side(adapter="csv", path="in.csv", csv={**options, "encoding": encoding})
    assert load(fixed, tmp_path).records["record_id"].to_list() == ["A"]


@pytest.mark.parametrize(
    ("delimiter", "written"), [(";", 'csv.delimiter: ";"'), ("\t", 'csv.delimiter: "\\t"')]
)
def test_a_header_read_with_the_wrong_delimiter_says_which_to_set(
    tmp_path: Path, delimiter: str, written: str
) -> None:
    write(tmp_path, "in.csv", delimiter.join(["id", "amount", "currency", "date"]) + "\nA;1;EUR;2024-03-01\n")
    with pytest.raises(JobSpecError) as info:
        load(side(adapter="csv", path="in.csv"), tmp_path)
    assert info.value.hint is not None and written in info.value.hint
    assert "case-sensitive" not in info.value.hint


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    loaded = csv_side(tmp_path, "id,amount,currency,date\nA,1,EUR,2024-03-01\n\n,,,\nB,2,EUR,2024-03-01\n\n")
    assert loaded.records["record_id"].to_list() == ["A", "B"]
    assert loaded.total_rows == 2
    assert loaded.quarantine.height == 0


def test_quoted_fields_may_hold_delimiters_and_newlines(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        'id,amount,currency,date,memo\nA,1,EUR,2024-03-01,"Invoice 7, part 1\nsecond line"\n',
        columns={**BASIC_COLUMNS, "description": "memo"},
    )
    assert loaded.records["description"].to_list() == ["Invoice 7, part 1\nsecond line"]


# --- whole-side failures ----------------------------------------------------------------------------


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"input file not found: .*nope\.csv"):
        load(side(adapter="csv", path="nope.csv"), tmp_path)


def test_a_mapping_to_an_absent_column_names_it_and_lists_the_columns(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,Amount,currency,date\nA,1,EUR,2024-03-01\n")
    with pytest.raises(JobSpecError) as info:
        load_side(
            side(adapter="csv", path="in.csv"),
            date_range=MARCH,
            margin_days=0,
            base_dir=tmp_path,
            side="source",
        )
    message = info.value.message
    assert "source.columns.amount names column 'amount', which is not in" in message
    assert "columns there: id, Amount, currency, date" in message
    assert info.value.hint is not None and "did you mean 'Amount'" in info.value.hint


def test_an_empty_file_is_a_job_spec_error(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="is empty"):
        csv_side(tmp_path, "")


def test_a_header_only_file_loads_no_rows(tmp_path: Path) -> None:
    loaded = csv_side(tmp_path, "id,amount,currency,date\n")
    assert (loaded.total_rows, loaded.records.height) == (0, 0)


def test_a_row_with_too_many_fields_is_a_job_spec_error(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"cannot read .* as CSV"):
        csv_side(tmp_path, "id,amount,currency,date\nA,1,EUR,2024-03-01,extra,fields\n")


# --- date range and margin --------------------------------------------------------------------------


def test_rows_in_the_margin_are_read_with_in_range_false_and_rows_beyond_are_counted(tmp_path: Path) -> None:
    text = (
        "id,amount,currency,date\n"
        "early,1,EUR,2024-02-28\n"  # 2 days before: margin
        "first,1,EUR,2024-03-01\n"
        "last,1,EUR,2024-03-10T23:59:59Z\n"
        "lag,1,EUR,2024-03-12\n"  # 2 days after the end: margin
        "beyond,1,EUR,2024-03-14\n"  # 4 days after: outside
        "way_before,1,EUR,2024-01-01\n"
    )
    write(tmp_path, "in.csv", text)
    loaded = load(
        side(adapter="csv", path="in.csv"),
        tmp_path,
        date_range=DateRange(start=date(2024, 3, 1), end=date(2024, 3, 10)),
        margin_days=3,
    )
    assert dict(loaded.records.select("record_id", "in_range").iter_rows()) == {
        "early": False,
        "first": True,
        "last": True,
        "lag": False,
    }
    assert loaded.out_of_window == 2
    assert loaded.total_rows == 6


# --- Parquet ----------------------------------------------------------------------------------------


def test_parquet_typed_columns_are_read_as_strings_and_parsed(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "id": ["P1", "P2"],
            "amount": pl.Series([Decimal("12.34"), Decimal("-0.50")], dtype=pl.Decimal(12, 2)),
            "cents": [1234, -50],
            "currency": ["EUR", "EUR"],
            "at": pl.Series(
                [datetime(2024, 3, 5, 10), datetime(2024, 3, 6, 11)], dtype=pl.Datetime("us", "UTC")
            ),
            "day": [date(2024, 3, 5), date(2024, 3, 6)],
            "meta": [{"order": "O-1"}, {"order": "O-2"}],
        }
    ).write_parquet(tmp_path / "in.parquet")
    decimal_side = side(
        adapter="parquet",
        path="in.parquet",
        columns={
            "record_id": "id",
            "amount": "amount",
            "currency": "currency",
            "occurred_at": "at",
            "reference": "meta.order",
        },
    )
    loaded = load(decimal_side, tmp_path)
    assert amounts(loaded) == [1234, -50]
    assert loaded.records["occurred_at"].to_list() == [
        datetime(2024, 3, 5, 10, tzinfo=UTC),
        datetime(2024, 3, 6, 11, tzinfo=UTC),
    ]
    assert loaded.records["reference"].to_list() == ["O-1", "O-2"]
    assert json.loads(loaded.records["raw"][0])["amount"] == "12.34"

    # A typed date column is parsed as a date whatever the text format says.
    minor_side = side(
        adapter="parquet",
        path="in.parquet",
        columns={"record_id": "id", "amount": "cents", "currency": "currency", "occurred_at": "day"},
        amount={"format": "minor_units"},
        dates={"format": "%d/%m/%Y"},
    )
    loaded = load(minor_side, tmp_path)
    assert amounts(loaded) == [1234, -50]
    assert loaded.records["occurred_at"].to_list() == [
        datetime(2024, 3, 5, tzinfo=UTC),
        datetime(2024, 3, 6, tzinfo=UTC),
    ]


def test_a_parquet_glob_reads_files_in_path_order_with_continuing_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    for name, ids in (("b.parquet", ["B1"]), ("a.parquet", ["A1", "A2"])):
        pl.DataFrame(
            {
                "id": ids,
                "amount": ["1.00"] * len(ids),
                "currency": ["EUR"] * len(ids),
                "date": ["2024-03-01"] * len(ids),
            }
        ).write_parquet(tmp_path / "parts" / name)
    loaded = load(side(adapter="parquet", path="parts/*.parquet"), tmp_path)
    assert loaded.records.select("record_id", "line_number").rows() == [("A1", 1), ("A2", 2), ("B1", 3)]


def test_a_parquet_glob_matching_nothing_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no file matches"):
        load(side(adapter="parquet", path="parts/*.parquet"), tmp_path)


def test_a_file_that_is_not_parquet_is_a_job_spec_error(tmp_path: Path) -> None:
    write(tmp_path, "in.parquet", "id,amount\n")
    with pytest.raises(JobSpecError, match=r"cannot read .* as Parquet"):
        load(side(adapter="parquet", path="in.parquet"), tmp_path)


# --- JSON Lines -------------------------------------------------------------------------------------


def test_jsonl_nested_objects_become_dotted_columns_and_raw_is_the_line(tmp_path: Path) -> None:
    lines = [
        '{"id": "J1", "total": "10.00", "ccy": "EUR", "at": "2024-03-05T10:00:00+01:00", '
        '"customer": {"name": "Ada"}}',
        "",
        '{"id": "J2", "total": "2.50", "ccy": "EUR", "at": "2024-03-06", '
        '"customer": {"name": null}, "tags": [1, 2]}',
    ]
    write(tmp_path, "in.jsonl", "\n".join(lines) + "\n")
    spec = side(
        adapter="jsonl",
        path="in.jsonl",
        columns={
            "record_id": "id",
            "amount": "total",
            "currency": "ccy",
            "occurred_at": "at",
            "counterparty": "customer.name",
        },
    )
    loaded = load(spec, tmp_path)
    assert loaded.records.select("record_id", "amount_minor", "counterparty", "line_number").rows() == [
        ("J1", 1000, "Ada", 1),
        ("J2", 250, None, 3),
    ]
    assert loaded.records["raw"][0] == lines[0]
    assert loaded.records["occurred_at"][0] == datetime(2024, 3, 5, 9, tzinfo=UTC)


def test_jsonl_numbers_are_read_exactly_as_written(tmp_path: Path) -> None:
    write(tmp_path, "in.jsonl", '{"id": "A", "amount": 12.5, "currency": "EUR", "date": "2024-03-01"}\n')
    assert amounts(load(side(adapter="jsonl", path="in.jsonl"), tmp_path)) == [1250]


def test_malformed_jsonl_lines_are_quarantined_and_the_rest_load(tmp_path: Path) -> None:
    write(
        tmp_path,
        "in.jsonl",
        '{"id": "A", "amount": "1.00", "currency": "EUR", "date": "2024-03-01"}\n'
        '{"id": "B", "amount": \n'
        "[1, 2]\n"
        '{"id": "C", "amount": 2, "currency": "EUR", "date": "2024-03-01", '
        '"extra": {"deep": {"er": true}}}\n',
    )
    loaded = load(side(adapter="jsonl", path="in.jsonl"), tmp_path)
    assert loaded.records.select("record_id", "amount_minor", "line_number").rows() == [
        ("A", 100, 1),
        ("C", 200, 4),
    ]
    assert loaded.quarantine["line_number"].to_list() == [2, 3]
    assert reasons(loaded)[0].startswith("json: cannot parse line")
    assert reasons(loaded)[1] == "json: line is a list, not an object"
    assert json.loads(loaded.quarantine["raw"][0]) == {"line": '{"id": "B", "amount":'}


def test_an_empty_jsonl_file_loads_no_rows_but_still_checks_the_mapping(tmp_path: Path) -> None:
    write(tmp_path, "in.jsonl", "\n")
    with pytest.raises(JobSpecError, match=r"columns\.record_id"):
        load(side(adapter="jsonl", path="in.jsonl"), tmp_path)


# --- DuckDB SQL -------------------------------------------------------------------------------------


def test_duckdb_sql_reads_files_relative_to_the_base_dir(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ledger.csv",
        "id,amount,currency,booked\nL1,12.34,EUR,2024-03-05 10:00:00\nL2,5,EUR,2024-03-06 11:00:00\n",
    )
    query = (
        "SELECT id, CAST(amount AS DECIMAL(18, 2)) AS amount, currency, "
        "CAST(booked AS TIMESTAMP) AS booked FROM read_csv('ledger.csv') WHERE amount > 6"
    )
    spec = side(
        adapter="duckdb_sql",
        query=query,
        columns={"record_id": "id", "amount": "amount", "currency": "currency", "occurred_at": "booked"},
        dates={"timezone": "Europe/Berlin"},
    )
    loaded = load(spec, tmp_path)
    assert loaded.records.select("record_id", "amount_minor", "line_number").rows() == [("L1", 1234, 1)]
    # A naive TIMESTAMP is local time in the side's zone.
    assert loaded.records["occurred_at"].to_list() == [datetime(2024, 3, 5, 9, tzinfo=UTC)]


def test_duckdb_sql_timestamptz_and_date_values_keep_their_instant(tmp_path: Path) -> None:
    query = (
        "SELECT 'A' AS id, 100 AS cents, 'EUR' AS currency, "
        "TIMESTAMPTZ '2024-03-05 10:00:00+02' AS at UNION ALL "
        "SELECT 'B', 200, 'EUR', CAST(DATE '2024-03-06' AS TIMESTAMPTZ) ORDER BY id"
    )
    spec = side(
        adapter="duckdb_sql",
        query=query,
        columns={"record_id": "id", "amount": "cents", "currency": "currency", "occurred_at": "at"},
        amount={"format": "minor_units"},
    )
    loaded = load(spec, tmp_path)
    assert loaded.records["occurred_at"].to_list() == [
        datetime(2024, 3, 5, 8, tzinfo=UTC),
        datetime(2024, 3, 6, tzinfo=UTC),
    ]


def test_a_duckdb_sql_error_is_a_job_spec_error_with_duckdbs_message(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError) as info:
        load(side(adapter="duckdb_sql", query="SELEC id FROM nowhere"), tmp_path)
    assert "DuckDB could not run the duckdb_sql query" in info.value.message
    assert "syntax error" in info.value.message


def test_a_duckdb_sql_query_reading_a_missing_file_is_a_job_spec_error(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"nope\.csv"):
        load(side(adapter="duckdb_sql", query="SELECT * FROM read_csv('nope.csv')"), tmp_path)


@pytest.mark.parametrize("call", ["delta_scan('x')", "iceberg_scan('x')"])
def test_a_duckdb_sql_query_calling_an_extensions_function_is_told_it_is_not_available(
    tmp_path: Path, call: str
) -> None:
    # never installed or loaded on the query's behalf: DuckDB's advice (INSTALL, SET ...) is not repeated
    name = call.split("(")[0]
    with pytest.raises(JobSpecError, match=f"{name} is not available in a duckdb_sql query") as info:
        load(side(adapter="duckdb_sql", query=f"SELECT * FROM {call}"), tmp_path)
    assert "never installs or loads extensions" in info.value.message
    assert "INSTALL" not in str(info.value) and "autoinstall" not in str(info.value)


def test_a_duckdb_sql_query_cannot_change_the_configuration(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="only hold SELECT statements, not SET"):
        load(side(adapter="duckdb_sql", query="SET threads = 1; SELECT 1 AS id"), tmp_path)


# --- presets and examples ---------------------------------------------------------------------------


def test_the_stripe_preset_reads_a_balance_transactions_export(tmp_path: Path) -> None:
    write(
        tmp_path,
        "stripe.csv",
        "id,amount,currency,created,description,reporting_category,payout,metadata[order_id]\n"
        "txn_1,120.00,eur,2024-03-01 09:15:02,Order 1001,charge,po_1,1001\n"
        "txn_2,-15.50,eur,2024-03-01 11:02:40,Refund,refund,po_1,\n"
        'txn_3,"1,204.50",eur,2024-03-02 08:00:00,Order 1002,charge,,1002\n',
    )
    loaded = load(
        SideSpec.model_validate(
            {"adapter": "csv", "path": "stripe.csv", "preset": "stripe_balance_transactions"}
        ),
        tmp_path,
    )
    assert loaded.records.select(
        "record_id", "amount_minor", "currency", "reference", "group_key"
    ).rows() == [
        ("txn_1", 12000, "EUR", "1001", "po_1"),
        ("txn_2", -1550, "EUR", None, "po_1"),
        ("txn_3", 120450, "EUR", "1002", None),
    ]
    assert loaded.records["occurred_at"][0] == datetime(2024, 3, 1, 9, 15, 2, tzinfo=UTC)


def test_the_bank_preset_reads_a_statement_export(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bank.csv",
        "Date,Description,Amount,Currency,Reference\n"
        '04/03/2024,STRIPE PAYOUT po_1,"1,204.50",EUR,STRIPE\n'
        "05/03/2024,CARD PAYMENT ACME,-42.00,EUR,\n",
    )
    loaded = load(
        SideSpec.model_validate({"adapter": "csv", "path": "bank.csv", "preset": "bank_statement_csv"}),
        tmp_path,
    )
    assert loaded.records.select("record_id", "amount_minor", "description", "reference").rows() == [
        ("line-1", 120450, "STRIPE PAYOUT po_1", "STRIPE"),
        ("line-2", -4200, "CARD PAYMENT ACME", None),
    ]
    assert loaded.records["occurred_at"].to_list() == [
        datetime(2024, 3, 4, tzinfo=UTC),
        datetime(2024, 3, 5, tzinfo=UTC),
    ]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_the_presets_read_the_sample_generators_files_into_its_canonical_frames(
    tmp_path: Path, fmt: str
) -> None:
    sample_module = pytest.importorskip("settler_pipeline.sample")
    sample = sample_module.generate_sample(400, seed=11, start=date(2026, 11, 1), days=7)
    paths = sample_module.write_sample_files(sample, tmp_path, fmt=fmt)
    wide = DateRange(start=date(2026, 10, 1), end=date(2027, 1, 31))
    # The presets plus what the sample spec adds to them (the charge id as a further reference, each
    # bank account's time zone): the sides exactly as `settler sample` writes them into its job spec.
    sides = sample_module.sample_sides(paths["source"].name, paths["target"].name, fmt)
    for name, expected in (("source", sample.source), ("target", sample.target)):
        spec = SideSpec.model_validate(sides[name])
        loaded = load(spec, tmp_path, date_range=wide)
        assert loaded.quarantine.height == 0, loaded.quarantine["reason"].head(3).to_list()
        # The adapters trim values; the generator keeps a padded reference (" INV-000123 ") as is.
        trimmed = expected.with_columns(pl.col("reference").str.strip_chars())
        assert loaded.records.drop("raw").equals(trimmed.drop("raw")), name


@pytest.mark.parametrize("spec_path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_job_loads_both_sides_without_quarantine(spec_path: Path) -> None:
    spec = load_job_spec(spec_path)
    for side_spec in (spec.source, spec.target):
        loaded = load(side_spec, spec.base_dir, margin_days=spec.date_window_days)
        assert loaded.records.height > 0
        assert loaded.quarantine.height == 0, loaded.quarantine["reason"].to_list()


# --- nothing is lost (property) ---------------------------------------------------------------------

_GARBAGE = {
    "id": st.sampled_from(["", "   "]),
    "amount": st.sampled_from(["", "12,3x", "abc", "1.2.3", "--1", "NaN", "  ", "1.234"]),
    "currency": st.sampled_from(["", "EURO", "E1", "12,3x", "  "]),
    "date": st.sampled_from(["", "32/13/2024", "2024-02-30", "abc", "2024-13-01T00:00:00"]),
}

Rows = tuple[list[dict[str, str]], set[int], dict[int, int], int]


@st.composite
def _rows(draw: st.DrawFn) -> Rows:
    """Random rows, some broken in one field; returns them with the expected outcome per line."""
    rows: list[dict[str, str]] = []
    bad: set[int] = set()
    good: dict[int, int] = {}
    outside = 0
    for line in range(1, draw(st.integers(min_value=0, max_value=25)) + 1):
        cents = draw(st.integers(min_value=-(10**9), max_value=10**9))
        when = date(2024, 2, 15).fromordinal(date(2024, 2, 15).toordinal() + draw(st.integers(0, 60)))
        row = {
            "id": f"r{line}",
            "amount": f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}",
            "currency": draw(st.sampled_from(["EUR", "usd", "Gbp"])),
            "date": when.isoformat(),
        }
        broken = draw(st.sampled_from([None, None, "id", "amount", "currency", "date"]))
        if broken is not None:
            row[broken] = draw(_GARBAGE[broken])
            bad.add(line)
        elif date(2024, 2, 27) <= when <= date(2024, 4, 3):  # March ± 3 days
            good[line] = cents
        else:
            outside += 1
        rows.append(row)
    return rows, bad, good, outside


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_rows())
def test_every_row_is_a_record_a_quarantined_row_or_counted_out_of_window(tmp_path: Path, data: Rows) -> None:
    rows, bad, good, outside = data
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", "amount", "currency", "date"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write(tmp_path, "prop.csv", buffer.getvalue())
    loaded = load(side(adapter="csv", path="prop.csv"), tmp_path, margin_days=3)
    assert loaded.total_rows == len(rows)
    assert set(loaded.quarantine["line_number"].to_list()) == bad
    assert dict(zip(loaded.records["line_number"], loaded.records["amount_minor"], strict=True)) == good
    assert loaded.out_of_window == outside


def test_amounts_beyond_the_matchers_range_are_quarantined_per_row_without_overflow(tmp_path: Path) -> None:
    loaded = csv_side(
        tmp_path,
        "id,amount,currency,date\nA,99999999999999.9999,CLF,2024-03-01\nB,-99999999999999.99,EUR,2024-03-01\n"
        "C,999999999999999,EUR,2024-03-01\nD,-10000000000000.00,EUR,2024-03-01\n",
    )
    assert amounts(loaded) == [-(10**15)]  # the limit itself is accepted
    assert reasons(loaded) == [
        "amount: 999999999999999999 minor units is beyond the largest amount matched (1000000000000000)",
        "amount: -9999999999999999 minor units is beyond the largest amount matched (1000000000000000)",
        "amount: '999999999999999' is too large",
    ]


def test_a_header_naming_a_column_twice_is_refused_naming_it_and_reading_by_position_works(
    tmp_path: Path,
) -> None:
    text = "id,amount,amount,currency,date\nA,1.00,2.00,EUR,2024-03-01\n"
    with pytest.raises(JobSpecError) as info:
        csv_side(tmp_path, text)
    assert "'amount'" in info.value.message and "more than once" in info.value.message
    assert info.value.hint is not None and "rename" in info.value.hint and "column_1" in info.value.hint
    # The run refuses it before it starts, as for any spec problem it can check up front.
    with pytest.raises(JobSpecError, match="more than once"):
        check_side(side(adapter="csv", path="in.csv"), base_dir=tmp_path, roots=InputRoots())
    by_position = {
        "record_id": "column_1",
        "amount": "column_3",
        "currency": "column_4",
        "occurred_at": "column_5",
    }
    loaded = csv_side(tmp_path, text, columns=by_position, csv={"header": False, "skip_rows": 1})
    assert amounts(loaded) == [200]


def test_a_repeated_name_in_a_header_after_a_long_preamble_is_refused(tmp_path: Path) -> None:
    # the header line starts beyond the first 64 KiB the header check looks at first
    preamble = "".join(f"export line {i:06d} {'x' * 60}\n" for i in range(1200))
    text = f"{preamble}id,amount,amount,currency,date\nA,1.00,2.00,EUR,2024-03-01\n"
    with pytest.raises(JobSpecError, match=r"'amount'.*more than once"):
        csv_side(tmp_path, text, csv={"skip_rows": 1200})


@pytest.mark.parametrize(
    "header",
    [
        "id,amount,currency,date,,",  # empty trailing header cells, as bank exports often have
        "id,amount,currency,date,note,note",  # a repeated column the spec does not read
        "id,amount,currency,date,ref,ref_duplicated_0",  # a real name like the reader's renaming
    ],
)
def test_a_header_repeating_only_columns_the_spec_does_not_read_is_read(tmp_path: Path, header: str) -> None:
    text = f"{header}\nA,1.00,EUR,2024-03-01,x,y\n"
    assert amounts(csv_side(tmp_path, text)) == [100]
    check_side(side(adapter="csv", path="in.csv"), base_dir=tmp_path, roots=InputRoots())
