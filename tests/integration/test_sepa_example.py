"""The worked SEPA example of docs/job-spec.md does what the docs say, on real files."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import yaml

from settler_pipeline.adapters import load_side
from settler_pipeline.domain.matching import match_records
from settler_pipeline.jobspec import DateRange, job_spec_from_mapping

DOC = Path(__file__).resolve().parents[2] / "docs" / "job-spec.md"

PROCESSOR = """\
id,created,amount,net,currency,description,reporting_category,customer_name,invoice_number,payout
ch_A1,2026-11-02 15:00:00,1190.00,1190.00,eur,Invoice INV-000123,charge,ACME GmbH,INV-000123,
ch_B2,2026-11-02 16:00:00,999.00,999.00,eur,Invoice INV-000124,charge,Beta AG,INV-000124,
ch_3PqR2sTUV,2026-11-04 10:00:00,79.00,79.00,usd,Invoice INV-000125,charge,Jane Doe,INV-000125,
ch_C3,2026-11-04 12:00:00,2350.00,2350.00,eur,Invoice INV-000126,charge,Gamma SE,INV-000126,
"""


def _section() -> str:
    text = DOC.read_text()
    return text[text.index("## A worked example: a SEPA statement") : text.index("## Errors")]


def test_the_sepa_example_matches_as_documented(tmp_path: Path) -> None:
    section = _section()
    statement = section.split("```text\n", 1)[1].split("```", 1)[0]
    spec_data = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kontoauszug.csv").write_text(statement)
    (tmp_path / "data" / "processor.csv").write_text(PROCESSOR)
    spec = job_spec_from_mapping(spec_data, base_dir=tmp_path)
    days = DateRange(start=date(2026, 11, 1), end=date(2026, 11, 30))
    source = load_side(spec.source, date_range=days, margin_days=3, base_dir=tmp_path)
    target = load_side(spec.target, date_range=days, margin_days=3, base_dir=tmp_path)
    assert source.quarantine.height == 0 and target.quarantine.height == 0

    times = dict(zip(target.records["record_id"], target.records["occurred_at"], strict=True))
    assert times["TX-88130"] == datetime(2026, 11, 4, 13, 30, tzinfo=UTC)  # New York, after DST ended
    assert times["TX-88121"] == datetime(2026, 11, 3, 8, 14, tzinfo=UTC)  # Berlin
    assert target.records.filter(record_id="TX-88121")["reference"].item() is None  # NOTPROVIDED

    result = match_records(source.records, target.records, spec.matching, run_id="sepa")
    links = {
        (tuple(row["source_ids"]), tuple(row["target_ids"])): (row["rule"], row["status"])
        for row in result.matches.iter_rows(named=True)
    }
    assert links == {
        (("ch_A1",), ("TX-88121",)): ("reference", "matched"),
        (("ch_B2",), ("TX-88122", "TX-88190")): ("split_payment", "matched"),
        (("ch_3PqR2sTUV",), ("TX-88130",)): ("reference", "matched"),
    }
    rent = result.unmatched.filter(pl.col("record_id") == "TX-88141").row(0, named=True)
    assert rent["reason"] == "missing_transaction"
    assert (rent["closest_id"], rent["closest_rejection"]) == ("ch_C3", "reference_conflict")
