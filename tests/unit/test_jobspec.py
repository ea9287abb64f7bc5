"""The job spec: YAML loading, validation messages, presets, path resolution, the date range."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from settler_pipeline.adapters.presets import PRESETS, preset_names
from settler_pipeline.domain.matching.config import (
    AmountDatePass,
    FuzzyPass,
    GroupPass,
    MatchConfig,
    ReferencePass,
)
from settler_pipeline.errors import JobSpecError, NotFoundError, ValidationError
from settler_pipeline.jobspec import (
    DateRange,
    JobSpec,
    PresetName,
    SideSpec,
    job_spec_from_mapping,
    load_job_spec,
)

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
name: stripe-vs-bank
source:
  adapter: csv
  path: data/stripe.csv
  preset: stripe_balance_transactions
target:
  adapter: csv
  path: data/bank.csv
  preset: bank_statement_csv
"""


def write_spec(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(tmp_path: Path, text: str) -> JobSpecError:
    with pytest.raises(JobSpecError) as info:
        load_job_spec(write_spec(tmp_path, text))
    return info.value


def side(**fields: Any) -> SideSpec:
    return SideSpec.model_validate(fields)


BASIC_COLUMNS = {"record_id": "id", "amount": "amount", "currency": "ccy", "occurred_at": "at"}


# --- loading ----------------------------------------------------------------------------------------


def test_a_minimal_spec_loads_with_defaults_and_paths_resolved_against_its_directory(tmp_path: Path) -> None:
    spec = load_job_spec(write_spec(tmp_path, MINIMAL))
    assert spec.name == "stripe-vs-bank"
    assert spec.date_window_days == 3
    assert spec.source.path == tmp_path.resolve() / "data" / "stripe.csv"
    assert spec.target.path == tmp_path.resolve() / "data" / "bank.csv"
    assert spec.base_dir == tmp_path.resolve()
    assert spec.matching == MatchConfig()
    assert spec.tenant_id is None


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    text = MINIMAL.replace("data/stripe.csv", "/srv/exports/stripe.csv")
    assert load_job_spec(write_spec(tmp_path, text)).source.path == Path("/srv/exports/stripe.csv")


def test_the_tenant_id_is_a_uuid_and_is_lower_cased(tmp_path: Path) -> None:
    spec = load_job_spec(write_spec(tmp_path, MINIMAL + "tenant_id: 0192F0C4-5D3E-7A10-8B2C-1D2E3F405162\n"))
    assert spec.tenant_id == "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"
    error = spec_error(tmp_path, MINIMAL + "tenant_id: acme\n")
    assert "tenant_id" in error.message


@pytest.mark.parametrize("name", ["Stripe", "-lead", "has space", "x" * 64, ""])
def test_job_names_are_lower_case_slugs(tmp_path: Path, name: str) -> None:
    error = spec_error(tmp_path, MINIMAL.replace("name: stripe-vs-bank", f"name: '{name}'"))
    assert "  - name:" in error.message


def test_a_missing_spec_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="job spec not found"):
        load_job_spec(tmp_path / "nope.yaml")


def test_malformed_yaml_names_the_file_line_and_column(tmp_path: Path) -> None:
    error = spec_error(tmp_path, "name: x\nsource: [unclosed\n")
    assert "job.yaml is not valid YAML" in error.message
    assert re.search(r"line \d+, column \d+", error.message)
    assert error.hint is not None


def test_duplicate_keys_are_refused_instead_of_silently_keeping_the_last(tmp_path: Path) -> None:
    error = spec_error(tmp_path, MINIMAL + "name: other\n")
    assert "duplicate key 'name'" in error.message


@pytest.mark.parametrize(
    ("text", "kind"), [("", "empty"), ("- a\n- b\n", "a list"), ("just text\n", "a str")]
)
def test_a_spec_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    assert f"but it is {kind}" in spec_error(tmp_path, text).message


def test_a_missing_required_key_names_its_path(tmp_path: Path) -> None:
    error = spec_error(
        tmp_path, "name: x\nsource:\n  adapter: csv\n  path: a.csv\n  preset: bank_statement_csv\n"
    )
    assert "  - target: required key is missing" in error.message
    assert "job.yaml" in error.message


@pytest.mark.parametrize("name", ["data/bank.csv\\0x", "data/bank\\n.csv", "data/\\tbank.csv"])
def test_a_path_with_a_control_character_is_a_spec_error_naming_it(tmp_path: Path, name: str) -> None:
    # a NUL reached the file system as "ValueError: embedded null byte", an internal error
    error = spec_error(tmp_path, MINIMAL.replace("path: data/bank.csv", f'path: "{name}"'))
    assert "target.path" in error.message and "control character" in error.message


# --- unknown keys and wrong values ------------------------------------------------------------------


def test_an_unknown_top_level_key_is_refused_with_a_suggestion_and_the_allowed_keys(tmp_path: Path) -> None:
    error = spec_error(tmp_path, MINIMAL + "date_windows_days: 2\n")
    assert (
        "  - date_windows_days: unknown key 'date_windows_days' (did you mean 'date_window_days'?)"
        in error.message
    )
    allowed = "block_records, date_window_days, description, matching, name, source, target, tenant_id"
    assert f"allowed keys here: {allowed}" in error.message


def test_an_unknown_nested_key_is_reported_with_its_field_path(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  preset: stripe_balance_transactions\n", "  columns: {amout: gross}\n  currency: {default: EUR}\n"
    )
    error = spec_error(tmp_path, text)
    assert "source.columns.amout: unknown key 'amout' (did you mean 'amount'?)" in error.message


def test_an_unknown_key_inside_a_matching_pass_lists_that_pass_keys(tmp_path: Path) -> None:
    error = spec_error(
        tmp_path, MINIMAL + "matching:\n  passes:\n    - kind: group\n      directon: many_to_one\n"
    )
    assert (
        "matching.passes[0].group.directon: unknown key 'directon' (did you mean 'direction'?)"
        in error.message
    )
    assert "direction" in error.message.split("allowed keys here:")[1]


def test_a_wrong_value_says_what_was_expected(tmp_path: Path) -> None:
    error = spec_error(
        tmp_path, MINIMAL.replace("adapter: csv\n  path: data/stripe.csv", "adapter: excel\n  path: x")
    )
    assert (
        "source.adapter: Input should be 'csv', 'parquet', 'jsonl' or 'duckdb_sql', got 'excel'"
        in error.message
    )


def test_an_unknown_preset_lists_the_presets(tmp_path: Path) -> None:
    error = spec_error(tmp_path, MINIMAL.replace("preset: bank_statement_csv", "preset: paypal"))
    assert "target.preset" in error.message
    assert "'stripe_balance_transactions' or 'bank_statement_csv'" in error.message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    error = spec_error(tmp_path, "name: x\nbogus: 1\nsource: {adapter: csv}\n")
    assert "has 3 problems" in error.message
    assert "bogus" in error.message and "target" in error.message and "source.columns" in error.message


def test_an_unknown_pass_kind_is_refused(tmp_path: Path) -> None:
    error = spec_error(tmp_path, MINIMAL + "matching:\n  passes:\n    - kind: magic\n")
    assert "matching.passes[0]" in error.message
    assert "'reference', 'split', 'amount_date', 'group', 'fuzzy'" in error.message


def test_an_invalid_tolerance_is_refused_with_its_path(tmp_path: Path) -> None:
    text = MINIMAL + "matching:\n  passes:\n    - kind: amount_date\n      tolerance: {percent: 150}\n"
    error = spec_error(tmp_path, text)
    assert "matching.passes[0].amount_date.tolerance.percent" in error.message


# --- side rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"adapter": "csv"}, "adapter csv needs path"),
        (
            {"adapter": "parquet", "path": "a.parquet", "query": "SELECT 1"},
            "query is only for adapter duckdb_sql",
        ),
        ({"adapter": "duckdb_sql"}, "adapter duckdb_sql needs query"),
        ({"adapter": "duckdb_sql", "query": "SELECT 1", "path": "a.csv"}, "adapter duckdb_sql takes no path"),
        ({"adapter": "parquet", "path": "a.parquet", "csv": {"delimiter": ";"}}, "csv options only apply"),
    ],
)
def test_each_adapter_takes_the_inputs_it_needs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        job_spec_from_mapping(
            {
                "name": "x",
                "source": {**fields, "columns": BASIC_COLUMNS},
                "target": {**fields, "columns": BASIC_COLUMNS},
            },
            base_dir=Path("."),
        )


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"record_id": "id", "occurred_at": "at", "currency": "c"}, "map amount"),
        ({"amount": "a", "debit": "d", "credit": "c", "occurred_at": "at", "currency": "c"}, "either amount"),
        ({"debit": "d", "occurred_at": "at", "currency": "c"}, "debit and credit go together"),
        ({"amount": "a", "currency": "c"}, "map occurred_at"),
        (
            {"amount": "a", "occurred_at": "at", "currency": "c", "optional": ["amount"]},
            "amount cannot be optional",
        ),
        ({"amount": "a", "occurred_at": "at"}, "map columns.currency or set currency.default"),
        ({"amount": 5, "occurred_at": "at", "currency": "c"}, "column name or a list of column names"),
        ({"amount": [], "occurred_at": "at", "currency": "c"}, "at least 1 item"),
    ],
)
def test_column_mappings_are_checked(columns: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        side(adapter="csv", path="a.csv", columns=columns)


def test_a_single_column_name_and_a_list_are_both_accepted() -> None:
    spec = side(adapter="csv", path="a.csv", columns={**BASIC_COLUMNS, "reference": ["ref", "memo"]})
    assert spec.columns.record_id == ["id"]
    assert spec.columns.reference == ["ref", "memo"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"amount": {"decimal_separator": ",", "thousands_separator": ","}}, "must differ"),
        ({"amount": {"thousands_separator": "_"}}, "thousands_separator must be one of"),
        ({"dates": {"format": "dd/mm/yyyy"}}, "neither iso"),
        ({"dates": {"format": "%d/%m"}}, "has no year"),
        ({"dates": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"currency": {"default": "EURO"}}, "not an ISO 4217 currency code"),
        ({"currency": {"exponents": {"EUR": 9}}}, "must be 0..4"),
        (
            {"currency": {"exponents": {"eur": 3, "EUR": 2}}},
            r"currency EUR is declared twice .*\(eur: 3, EUR: 2\)",
        ),
        ({"currency": {"exponents": {"xts": 3, " XTS": 3}}}, "currency XTS is declared twice"),
        ({"csv": {"delimiter": ";;"}}, "at most 1 character"),
        ({"csv": {"encoding": "klingon"}}, "unknown text encoding"),
        ({"csv": {"encoding": "rot13"}}, "unknown text encoding"),
        ({"csv": {"delimiter": ";", "quote_char": ";"}}, "quote_char and delimiter must differ"),
    ],
)
def test_parsing_options_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        side(adapter="csv", path="a.csv", columns=BASIC_COLUMNS, **options)


def test_option_values_are_normalised() -> None:
    spec = side(
        adapter="csv",
        path="a.csv",
        columns={"amount": "a", "occurred_at": "at"},
        currency={"default": " eur ", "exponents": {"xts": 3}},
        csv={"encoding": "UTF8"},
        amount={"decimal_separator": ","},
    )
    assert spec.currency.default == "EUR"
    assert spec.currency.exponents == {"XTS": 3}
    assert spec.csv_options.encoding == "utf-8"
    assert spec.amount.grouping == "."  # the default grouping follows a decimal comma


# --- presets ----------------------------------------------------------------------------------------


def test_preset_names_match_the_spec_literal() -> None:
    assert sorted(PresetName.__args__) == preset_names() == sorted(PRESETS)


def test_a_preset_fills_columns_amount_dates_and_csv_options() -> None:
    spec = side(adapter="csv", path="bank.csv", preset="bank_statement_csv")
    assert spec.columns.occurred_at == ["Date"]
    assert spec.columns.amount == ["Amount"]
    assert spec.dates.format == "%d/%m/%Y"
    assert spec.amount.grouping == ","
    assert spec.csv_options.delimiter == ","
    assert set(spec.columns.optional) == {"record_id", "reference", "counterparty"}


def test_explicit_keys_override_the_preset_key_by_key() -> None:
    spec = side(
        adapter="csv",
        path="stripe.csv",
        preset="stripe_balance_transactions",
        columns={"amount": "net", "reference": "order_id"},
        dates={"timezone": "Europe/Dublin"},
        csv={"delimiter": ";"},
    )
    assert spec.columns.amount == ["net"]
    assert spec.columns.record_id == ["id"]
    assert spec.dates.format == "%Y-%m-%d %H:%M:%S"
    assert spec.dates.timezone == "Europe/Dublin"
    assert spec.csv_options.delimiter == ";"
    # A column the spec names itself must exist even where the preset's default was optional.
    assert "reference" not in spec.columns.optional


def test_mapping_debit_and_credit_replaces_the_preset_amount_column() -> None:
    spec = side(
        adapter="csv", path="bank.csv", preset="bank_statement_csv", columns={"debit": "Out", "credit": "In"}
    )
    assert spec.columns.amount is None
    assert (spec.columns.debit, spec.columns.credit) == (["Out"], ["In"])


def test_an_explicit_null_removes_a_preset_mapping() -> None:
    spec = side(
        adapter="csv", path="stripe.csv", preset="stripe_balance_transactions", columns={"group_key": None}
    )
    assert spec.columns.group_key is None
    assert spec.columns.record_id == ["id"]


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_a_dumped_spec_validates_back_to_the_same_spec(path: Path) -> None:
    spec = load_job_spec(path)
    again = job_spec_from_mapping(spec.model_dump(mode="json"), base_dir=spec.base_dir)
    assert again.model_dump() == spec.model_dump()
    assert again.base_dir == spec.base_dir
    assert again.fingerprint() == spec.fingerprint()


def test_preset_csv_defaults_do_not_apply_to_other_adapters() -> None:
    spec = side(adapter="parquet", path="stripe.parquet", preset="stripe_balance_transactions")
    assert spec.csv is None
    assert spec.columns.group_key == ["payout"]


# --- matching section -------------------------------------------------------------------------------


def test_the_matching_section_builds_the_passes_in_order(tmp_path: Path) -> None:
    text = MINIMAL + (
        "matching:\n"
        "  passes:\n"
        "    - {kind: reference, strip_prefixes: ['INV-']}\n"
        "    - {kind: group, direction: many_to_one, tolerance: {absolute_minor: 5}}\n"
        "    - {kind: amount_date, tolerance: {percent: '0.5', percent_of: target, combine: both}}\n"
        "    - {kind: fuzzy, fields: [description], min_score: 0.9}\n"
    )
    passes = load_job_spec(write_spec(tmp_path, text)).matching.passes
    assert [type(p) for p in passes] == [ReferencePass, GroupPass, AmountDatePass, FuzzyPass]
    assert isinstance(passes[1], GroupPass) and passes[1].tolerance.absolute_minor == 5
    assert isinstance(passes[2], AmountDatePass) and passes[2].tolerance.percent_of == "target"


# --- the date range ---------------------------------------------------------------------------------


def test_a_date_range_runs_from_start_to_end_inclusive() -> None:
    march = DateRange(start=date(2024, 3, 1), end=date(2024, 3, 31))
    assert march.days == 31
    assert march.contains(date(2024, 3, 31)) and not march.contains(date(2024, 4, 1))
    assert march.widened(3) == DateRange(start=date(2024, 2, 27), end=date(2024, 4, 3))


def test_the_first_allowed_day_widens_past_the_bounds_a_run_range_keeps_to() -> None:
    first = DateRange(start=date(1900, 1, 1), end=date(1900, 1, 2))
    assert first.widened(2).start == date(1899, 12, 30)
    with pytest.raises(ValidationError, match="reaches outside"):
        DateRange(start=date(1899, 12, 31), end=date(1900, 1, 2))


def test_a_date_range_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="start 2024-03-02 is after its end 2024-03-01"):
        DateRange(start=date(2024, 3, 2), end=date(2024, 3, 1))


# --- fingerprint ------------------------------------------------------------------------------------


def test_the_fingerprint_is_stable_and_changes_with_the_rules(tmp_path: Path) -> None:
    first = load_job_spec(write_spec(tmp_path, MINIMAL))
    again = load_job_spec(write_spec(tmp_path, MINIMAL))
    changed = load_job_spec(write_spec(tmp_path, MINIMAL + "date_window_days: 5\n"))
    assert first.fingerprint() == again.fingerprint() != changed.fingerprint()


# --- documentation and examples stay valid ----------------------------------------------------------


def _doc_specs() -> list[tuple[str, dict[str, Any]]]:
    text = (REPO / "docs" / "job-spec.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    specs = []
    for index, block in enumerate(blocks):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "name" in data and "source" in data:
            specs.append((f"block{index}-{data['name']}", data))
    return specs


@pytest.mark.parametrize(("label", "data"), _doc_specs(), ids=[label for label, _ in _doc_specs()])
def test_every_complete_job_spec_in_the_docs_is_valid(label: str, data: dict[str, Any]) -> None:
    spec = job_spec_from_mapping(data, base_dir=REPO / "examples", origin=label)
    assert isinstance(spec, JobSpec)


def test_the_docs_hold_several_complete_job_specs() -> None:
    assert len(_doc_specs()) >= 4


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_spec_is_valid_and_its_files_exist(path: Path) -> None:
    spec = load_job_spec(path)
    for side_spec in (spec.source, spec.target):
        if side_spec.path is not None:
            assert side_spec.path.is_file(), side_spec.path


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "matching:\n  passes:\n    - kind: amount_date\n"
            "      tolerance: {absolute_minor: 99999999999999999999999}\n",
            "matching.passes[0].amount_date.tolerance.absolute_minor",
        ),
        ("block_records: 99999999999999999999999\n", "block_records"),
        ("", "source.csv.skip_rows"),
    ],
)
def test_an_integer_beyond_what_the_matcher_can_hold_is_a_spec_error_naming_it(
    tmp_path: Path, text: str, field: str
) -> None:
    spec = MINIMAL + text
    if field.endswith("skip_rows"):
        spec = spec.replace(
            "  preset: stripe_balance_transactions\n",
            "  preset: stripe_balance_transactions\n  csv: {skip_rows: 99999999999999999999999}\n",
            1,
        )
    error = spec_error(tmp_path, spec)
    assert field in error.message and "less than or equal to" in error.message
