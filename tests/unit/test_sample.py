"""The sample generator: shapes, determinism, designed hard cases, ground truth and raw files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline.domain.transactions import TRANSACTION_SCHEMA
from settler_pipeline.errors import ValidationError
from settler_pipeline.sample import (
    BANK_ACCOUNTS,
    HARD_CASE_RATES,
    SOURCE_RAW_COLUMNS,
    TARGET_RAW_COLUMNS,
    TRUTH_SCHEMA,
    TWINS_SCHEMA,
    SampleData,
    generate_sample,
    write_sample_files,
)

START = date(2026, 11, 1)


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(10_000, seed=42, start=START, days=30)


def test_both_sides_have_the_canonical_schema_and_numbered_lines(sample: SampleData) -> None:
    for frame in (sample.source, sample.target):
        assert frame.schema == pl.Schema(TRANSACTION_SCHEMA)
        assert frame["line_number"].to_list() == list(range(1, frame.height + 1))
        assert frame["in_range"].all()
    assert sample.source.height == 10_000
    assert sample.truth.schema == pl.Schema(TRUTH_SCHEMA)
    assert sample.twins.schema == pl.Schema(TWINS_SCHEMA)


def test_the_same_seed_gives_the_same_sample_and_another_seed_does_not() -> None:
    first = generate_sample(2_000, seed=1, start=START, days=10)
    again = generate_sample(2_000, seed=1, start=START, days=10)
    other = generate_sample(2_000, seed=2, start=START, days=10)
    for name in ("source", "target", "truth", "twins", "decoys", "source_raw", "target_raw"):
        assert getattr(first, name).equals(getattr(again, name))
    assert not first.source.equals(other.source)


def test_source_rows_look_like_a_processor_export(sample: SampleData) -> None:
    source = sample.source
    assert source["record_id"].str.contains(r"^(ch|re)_3[0-9A-Za-z]{23}$").all()
    refunds = source.filter(pl.col("record_id").str.starts_with("re_"))
    assert refunds.height > 0 and (refunds["amount_minor"] < 0).all()
    assert source["reference"].drop_nulls().str.contains(r"^INV-\d{6,}$").all()
    assert source["group_key"].drop_nulls().str.contains(r"^po_1[0-9A-Za-z]{23}$").all()
    days = source.select(
        first=pl.col("occurred_at").dt.date().min(), last=pl.col("occurred_at").dt.date().max()
    )
    first, last = days.row(0)
    assert first >= START
    assert last < date(2026, 12, 1)
    exported_once = source.head(source.height - round(HARD_CASE_RATES["duplicate"] * source.height))
    assert exported_once["occurred_at"].is_sorted()


def test_duplicates_are_whole_rows_appended_again(sample: SampleData) -> None:
    expected = round(HARD_CASE_RATES["duplicate"] * 10_000)
    repeated = sample.source.filter(pl.col("record_id").is_duplicated())
    assert repeated.height == 2 * expected
    firsts = repeated.group_by("record_id").agg(pl.col("line_number").min())
    assert (firsts["line_number"] <= 10_000 - expected).all()
    assert repeated.drop("line_number").unique().height == expected


def test_twins_are_indistinguishable_source_records(sample: SampleData) -> None:
    assert sample.twins.height > 0
    columns = ["amount_minor", "currency", "counterparty", "description", "reference", "group_key"]
    by_line = sample.source.with_columns(day=pl.col("occurred_at").dt.date())
    for a, b in sample.twins.iter_rows():
        left = by_line.filter(pl.col("line_number") == a).select(*columns, "day").row(0)
        right = by_line.filter(pl.col("line_number") == b).select(*columns, "day").row(0)
        assert left == right
        assert left[columns.index("reference")] is None


def test_payout_links_sum_their_charges_into_one_bank_credit(sample: SampleData) -> None:
    payouts = sample.truth.filter(pl.col("kind") == "payout")
    assert payouts.height > 0
    amounts = dict(zip(sample.source["line_number"], sample.source["amount_minor"], strict=True))
    keys = dict(zip(sample.source["line_number"], sample.source["group_key"], strict=True))
    bank = dict(zip(sample.target["line_number"], sample.target["amount_minor"], strict=True))
    for source_lines, target_lines in payouts.select("source_lines", "target_lines").iter_rows():
        assert sum(amounts[line] for line in source_lines) == bank[target_lines[0]]
        assert len({keys[line] for line in source_lines}) == 1


def test_truth_covers_each_designed_kind_and_every_linked_line_once(sample: SampleData) -> None:
    kinds = set(sample.truth["kind"])
    assert kinds == {
        "one_to_one",
        "payout",
        "twin",
        "currency_mismatch",
        "amount_mismatch",
        "date_mismatch",
        "split_payment",
        "partial_payment",
    }
    targets = sample.truth["target_lines"].explode()
    assert targets.n_unique() == targets.len()
    sources = sample.truth["source_lines"].explode()
    assert sources.n_unique() == sources.len()
    assert not targets.is_in(sample.decoys["target_line"].implode()).any()
    orphans = sample.target.height - targets.len() - sample.decoys.height
    assert orphans == pytest.approx(HARD_CASE_RATES["target_orphan"] * 10_000, rel=0.1)
    assert sample.decoys.height == pytest.approx(HARD_CASE_RATES["decoy"] * 10_000, rel=0.1)
    assert set(sample.truth["phenomenon"]) >= {
        "reference_field",
        "reference_noise",
        "reference_in_memo",
        "reference_in_punctuated_memo",
        "reference_is_charge_id",
        "reference_placeholder",
        "reference_missing",
    }


def test_split_payments_sum_to_the_invoice_and_part_payments_fall_short(sample: SampleData) -> None:
    amounts = dict(zip(sample.source["line_number"], sample.source["amount_minor"], strict=True))
    invoices = dict(zip(sample.source["line_number"], sample.source["reference"], strict=True))
    bank = sample.target.select("line_number", "amount_minor", "description", "reference")
    for kind, total in (("split_payment", 0), ("partial_payment", -1)):
        links = sample.truth.filter(pl.col("kind") == kind)
        assert links.height > 0
        for (source_line,), target_lines in links.select("source_lines", "target_lines").iter_rows():
            parts = bank.filter(pl.col("line_number").is_in(target_lines))
            assert parts.height == len(target_lines) >= 2
            paid = parts["amount_minor"].sum()
            assert (paid == amounts[source_line]) if total == 0 else (0 < paid < amounts[source_line])
            assert parts["description"].str.contains(invoices[source_line].removeprefix("INV-")).all()
            assert parts["reference"].is_null().all()


def test_decoys_copy_a_settlement_but_name_an_invoice_never_issued(sample: SampleData) -> None:
    decoys = sample.target.filter(pl.col("line_number").is_in(sample.decoys["target_line"].implode()))
    assert decoys["reference"].str.contains(r"^INV-9\d{6}$").all()
    assert not decoys["reference"].is_in(sample.source["reference"].drop_nulls().implode()).any()
    assert decoys["amount_minor"].is_in(sample.source["amount_minor"].implode()).all()


def test_bank_lines_show_references_as_real_statements_do(sample: SampleData) -> None:
    raw = sample.target_raw
    assert raw["Reference"].is_in(["NOTPROVIDED", "NONREF", "N/A", "-"]).sum() > 500
    assert raw["Description"].str.contains(r"SVWZ\+RE/INV-\d{6}/2026|Rechnungsnr\.INV-\d{6}").any()
    charge_ids = sample.truth.filter(pl.col("phenomenon") == "reference_is_charge_id")
    ids = dict(zip(sample.source["line_number"], sample.source["record_id"], strict=True))
    memos = dict(zip(sample.target["line_number"], sample.target["description"], strict=True))
    for (source_line,), (target_line,) in (
        charge_ids.select("source_lines", "target_lines").head(50).iter_rows()
    ):
        assert f"{ids[source_line]}/" in memos[target_line]
    assert (sample.source["references"].list.first() == sample.source["record_id"]).all()
    assert sample.target["reference"].is_in(["NOTPROVIDED", "NONREF", "N/A", "-"]).sum() == 0


def test_booking_times_are_local_to_each_account(sample: SampleData) -> None:
    raw = sample.target_raw.select("Account", "Currency", "Date").with_columns(
        utc=sample.target["occurred_at"],
        local=pl.col("Date").str.to_datetime("%d/%m/%Y %H:%M", time_unit="us"),
    )
    # The three currencies of the mix, and the account of other currencies (currency mismatches).
    assert set(raw["Account"]) >= {account for account, _ in BANK_ACCOUNTS.values()}
    for currency, (account, zone) in BANK_ACCOUNTS.items():
        rows = raw.filter(pl.col("Currency") == currency)
        assert (rows["Account"] == account).all()
        expected = rows["utc"].dt.convert_time_zone(zone).dt.replace_time_zone(None)
        assert (expected == rows["local"]).mean() > 0.999  # the repeated autumn hour reads earlier


def test_settlement_lags_cross_the_end_of_the_range(sample: SampleData) -> None:
    last_day = sample.target.select(pl.col("occurred_at").dt.date().max()).item()
    assert last_day > date(2026, 11, 30)


def test_hard_cases_can_be_switched_off() -> None:
    clean = generate_sample(3_000, seed=5, start=START, days=10, hard_cases=False)
    assert clean.source["record_id"].n_unique() == clean.source.height
    assert clean.twins.height == 0
    assert set(clean.truth["kind"]) == {"one_to_one"}
    assert clean.target["reference"].str.contains(r"^INV-\d{6}$").all()
    assert clean.target.height == clean.source.height


def test_the_currency_mix_is_respected_and_validated() -> None:
    eur_only = generate_sample(500, seed=3, start=START, days=5, currency_mix={"EUR": 1.0})
    assert set(eur_only.source["currency"]) == {"EUR"}
    with pytest.raises(ValidationError, match="unsupported"):
        generate_sample(10, seed=3, start=START, days=5, currency_mix={"JPY": 1.0})
    with pytest.raises(ValidationError):
        generate_sample(10, seed=3, start=START, days=0)


def test_raw_rows_carry_the_export_formats(sample: SampleData) -> None:
    source_raw, target_raw = sample.source_raw, sample.target_raw
    assert tuple(source_raw.columns) == SOURCE_RAW_COLUMNS
    assert tuple(target_raw.columns) == TARGET_RAW_COLUMNS
    assert source_raw["amount"].str.contains(r"^-?\d+\.\d{2}$").all()
    assert source_raw["currency"].str.contains(r"^[a-z]{3}$").all()
    assert source_raw["created"].str.contains(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$").all()
    assert target_raw["Date"].str.contains(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}$").all()
    assert target_raw["Amount"].str.contains(r"^-?\d{1,3}(,\d{3})*\.\d{2}$").all()
    assert target_raw["Amount"].str.contains(",").any()


def test_raw_rows_parse_back_to_the_canonical_frames(sample: SampleData) -> None:
    source = sample.source_raw.select(
        amount_minor=pl.col("amount").str.replace(".", "", literal=True).cast(pl.Int64),
        currency=pl.col("currency").str.to_uppercase(),
        occurred_at=pl.col("created").str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC", time_unit="us"),
        reference=pl.col("invoice_number"),
        group_key=pl.col("payout"),
        counterparty=pl.col("customer_name"),
    )
    assert source.equals(sample.source.select(source.columns))
    target = sample.target_raw.select(
        amount_minor=pl.col("Amount").str.replace_all(r"[,.]", "").cast(pl.Int64),
        reference=pl.when(~pl.col("Reference").is_in(["NOTPROVIDED", "NONREF", "N/A", "-"])).then(
            pl.col("Reference").str.strip_chars()
        ),
        description=pl.col("Description").str.strip_chars(),
    )
    assert target.equals(sample.target.select(target.columns))
    first = json.loads(sample.target["raw"][0])
    assert list(first) == list(TARGET_RAW_COLUMNS)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_sample_files_round_trip_in_every_format(tmp_path: Path, fmt: str) -> None:
    small = generate_sample(300, seed=9, start=START, days=5)
    paths = write_sample_files(small, tmp_path, fmt=fmt, include_truth=True)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"source.{fmt}", f"target.{fmt}", "truth.parquet", "twins.parquet", "decoys.parquet"]
    )
    for side, columns in (("source", SOURCE_RAW_COLUMNS), ("target", TARGET_RAW_COLUMNS)):
        if fmt == "csv":
            read = pl.read_csv(paths[side], infer_schema=False)
        elif fmt == "parquet":
            read = pl.read_parquet(paths[side])
        else:
            read = pl.read_ndjson(paths[side], schema=dict.fromkeys(columns, pl.String()))
        assert read.equals(getattr(small, f"{side}_raw"))
    assert pl.read_parquet(paths["truth"]).equals(small.truth)
