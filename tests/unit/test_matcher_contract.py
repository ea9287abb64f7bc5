"""The matcher's contract: schemas, order, ids, duplicates, margins, accounting and input checks."""

from __future__ import annotations

import uuid
from datetime import datetime

import polars as pl
import pytest

from settler_pipeline.domain.matching import (
    DUPLICATE_SCHEMA,
    MATCH_ID_NAMESPACE,
    MATCH_SCHEMA,
    UNMATCHED_SCHEMA,
    AmountDatePass,
    MatchConfig,
    ReferencePass,
    match_records,
)
from settler_pipeline.domain.transactions import empty_transactions
from settler_pipeline.errors import ValidationError
from tests.unit.test_matcher_support import links, only_match, reasons, records, run

SOURCE = records(
    {"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"},
    {"record_id": "ch_2", "amount_minor": 2000},
    {"record_id": "ch_3", "amount_minor": 3000, "group_key": "po_1"},
    {"record_id": "ch_4", "amount_minor": 4000, "group_key": "po_1"},
    {"record_id": "ch_5", "amount_minor": 999},
    {"record_id": "ch_1", "amount_minor": 1000, "reference": "INV-1"},
)
TARGET = records(
    {"record_id": "bt_1", "amount_minor": 1000, "reference": "INV-1", "day": 1},
    {"record_id": "bt_2", "amount_minor": 2000, "day": 2},
    {"record_id": "bt_3", "amount_minor": 7000, "reference": "po_1", "day": 2},
    {"record_id": "bt_4", "amount_minor": 55},
)


def test_every_frame_has_its_documented_schema() -> None:
    result = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1")
    assert result.matches.schema == pl.Schema(MATCH_SCHEMA)
    assert result.unmatched.schema == pl.Schema(UNMATCHED_SCHEMA)
    assert result.duplicates.schema == pl.Schema(DUPLICATE_SCHEMA)


def test_empty_inputs_give_empty_frames_with_the_same_schemas() -> None:
    result = match_records(empty_transactions(), empty_transactions(), MatchConfig(), run_id="run-1")
    assert result.matches.schema == pl.Schema(MATCH_SCHEMA)
    assert result.unmatched.schema == pl.Schema(UNMATCHED_SCHEMA)
    assert result.duplicates.schema == pl.Schema(DUPLICATE_SCHEMA)
    assert result.matches.height == result.unmatched.height == result.duplicates.height == 0
    one_side = match_records(SOURCE, empty_transactions(), MatchConfig(), run_id="run-1")
    assert one_side.unmatched.height == SOURCE.height - 1


def test_the_same_input_in_any_row_order_gives_equal_frames() -> None:
    first = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1")
    again = match_records(
        SOURCE.reverse(), TARGET.sample(fraction=1.0, shuffle=True, seed=3), MatchConfig(), run_id="run-1"
    )
    assert first.matches.equals(again.matches)
    assert first.unmatched.equals(again.unmatched)
    assert first.duplicates.equals(again.duplicates)


def test_frames_are_sorted_deterministically() -> None:
    result = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1")
    firsts = result.matches["source_lines"].list.first().to_list()
    assert firsts == sorted(firsts)
    assert result.unmatched.select("side", "line_number").rows() == sorted(
        result.unmatched.select("side", "line_number").rows()
    )


def test_match_ids_are_uuid5_of_run_rule_and_sorted_record_keys() -> None:
    result = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1")
    by_rule = {row["rule"]: row for row in result.matches.iter_rows(named=True)}
    assert by_rule["reference"]["match_id"] == str(
        uuid.uuid5(MATCH_ID_NAMESPACE, "run-1\x1freference\x1fch_1\x1fbt_1")
    )
    group = by_rule["group_sum"]
    assert group["match_id"] == str(
        uuid.uuid5(MATCH_ID_NAMESPACE, "run-1\x1fgroup_sum\x1fch_3\x1ech_4\x1fbt_3")
    )
    other_run = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-2")
    assert set(other_run.matches["match_id"]).isdisjoint(result.matches["match_id"])


def test_extra_occurrences_of_a_record_id_are_flagged_and_kept_out_of_matching() -> None:
    result = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1")
    assert result.duplicates.rows(named=True) == [
        {"side": "source", "record_id": "ch_1", "line_number": 6, "first_line_number": 1}
    ]
    assert 6 not in result.matches["source_lines"].explode().to_list()
    assert 6 not in result.unmatched.filter(pl.col("side") == "source")["line_number"].to_list()
    assert (("ch_1",), ("bt_1",)) in links(result)


def test_records_without_an_id_are_never_duplicates() -> None:
    source = records({"record_id": None, "amount_minor": 5}, {"record_id": None, "amount_minor": 5})
    result = match_records(source, empty_transactions(), MatchConfig(), run_id="r")
    assert result.duplicates.height == 0
    assert result.unmatched.height == 2


def test_unmatched_margin_records_are_outside_range_and_matched_ones_count_as_matched() -> None:
    source = records(
        {"record_id": "margin_alone", "amount_minor": 1, "in_range": False, "reference": "X-1"},
        {"record_id": "margin_matched", "amount_minor": 2, "in_range": False},
    )
    target = records(
        {"record_id": "bt", "amount_minor": 2}, {"record_id": "near", "amount_minor": 9, "reference": "X-1"}
    )
    result = match_records(source, target, MatchConfig(), run_id="r")
    assert links(result) == {(("margin_matched",), ("bt",))}
    # The reference near miss would say amount_mismatch; a margin record belongs to another run.
    assert reasons(result)[("source", "margin_alone")] == ("outside_range", [])
    assert reasons(result)[("target", "near")] == ("amount_mismatch", ["margin_alone"])


def test_accounting_puts_every_record_in_exactly_one_bucket() -> None:
    accounting = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1").accounting()
    assert accounting == {
        "source": {"input": 6, "matched": 4, "proposed": 0, "unmatched": 1, "duplicate": 1},
        "target": {"input": 4, "matched": 3, "proposed": 0, "unmatched": 1, "duplicate": 0},
    }


def test_passes_run_in_the_configured_order() -> None:
    source = [{"amount_minor": 1000, "reference": "INV-1"}]
    target = [{"amount_minor": 1000, "reference": "INV-1"}]
    assert only_match(run(source, target, ReferencePass(), AmountDatePass()))["rule"] == "reference"
    assert only_match(run(source, target, AmountDatePass(), ReferencePass()))["rule"] == "amount_date"


def test_a_record_used_by_one_pass_is_not_offered_to_the_next() -> None:
    source = [
        {"record_id": "a", "amount_minor": 1000, "reference": "INV-1"},
        {"record_id": "b", "amount_minor": 1000},
    ]
    target = [{"record_id": "x", "amount_minor": 1000, "reference": "INV-1"}]
    result = run(source, target, ReferencePass(), AmountDatePass())
    assert links(result) == {(("a",), ("x",))}
    assert reasons(result) == {("source", "b"): ("missing_settlement", [])}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("amount_minor"), "lack column"),
        (lambda f: f.with_columns(line_number=pl.lit(1, dtype=pl.Int64)), "not unique"),
        (lambda f: f.with_columns(amount_minor=pl.lit(None, dtype=pl.Int64)), "nulls"),
        (lambda f: f.with_columns(occurred_at=pl.lit(datetime(2026, 11, 1))), "timezone-aware"),
        (lambda f: f.with_columns(amount_minor=pl.lit("12.00")), "canonical column types"),
        (lambda f: f.with_columns(amount_minor=pl.lit(10**16, dtype=pl.Int64)), "amount beyond"),
    ],
)
def test_inputs_that_break_the_contract_are_refused(change: object, message: str) -> None:
    bad = change(SOURCE)  # type: ignore[operator]
    with pytest.raises(ValidationError, match=message):
        match_records(bad, TARGET, MatchConfig(), run_id="run-1")


def test_a_run_id_is_required() -> None:
    with pytest.raises(ValidationError, match="run_id"):
        match_records(SOURCE, TARGET, MatchConfig(), run_id=" ")


def test_optional_text_columns_may_be_absent() -> None:
    source = SOURCE.drop("description", "counterparty", "raw")
    result = match_records(source, TARGET, MatchConfig(), run_id="run-1")
    assert result.accounting()["source"]["matched"] == 4


def test_times_in_other_zones_are_compared_in_utc() -> None:
    source = SOURCE.with_columns(pl.col("occurred_at").dt.convert_time_zone("America/New_York"))
    same = match_records(SOURCE, TARGET, MatchConfig(), run_id="run-1")
    converted = match_records(source, TARGET, MatchConfig(), run_id="run-1")
    assert same.matches.equals(converted.matches)


def test_the_config_round_trips_through_json() -> None:
    config = MatchConfig()
    assert MatchConfig.model_validate_json(config.model_dump_json()) == config
