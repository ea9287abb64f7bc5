"""Amounts of a run are shown with the minor-unit exponents the run used: those its job spec declares
under ``currency.exponents`` (here XTS with 3 digits, where the built-in table says 2), in review, in
``settler sql`` and in ``analytics.duckdb`` alike."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from settler_pipeline import projections
from settler_pipeline.errors import JobSpecError
from settler_pipeline.session import Settler

DAY = date(2026, 11, 2)

SOURCE = """id,date,amount,currency,reference
s1,2026-11-02,12.345,XTS,INV-1
s2,2026-11-02,5.000,XTS,INV-2
s3,2026-11-02,7.25,EUR,INV-3
"""
TARGET = """id,date,amount,currency,reference
t1,2026-11-02,99.000,XTS,INV-9
"""
SPEC = """name: private-units
source:
  adapter: csv
  path: source.csv
  columns: {record_id: id, occurred_at: date, amount: amount, currency: currency, reference: reference}
  currency: {exponents: {xts: 3}}
target:
  adapter: csv
  path: target.csv
  columns: {record_id: id, occurred_at: date, amount: amount, currency: currency, reference: reference}
  currency: {exponents: {XTS: 3}}
matching:
  passes:
    - kind: amount_date
"""


def test_amounts_show_with_the_exponents_the_run_used(tmp_path: Path) -> None:
    (tmp_path / "source.csv").write_text(SOURCE)
    (tmp_path / "target.csv").write_text(TARGET)
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        outcome = app.reconcile(spec, start=DAY, end=DAY)
        _, items = app.review_items(outcome.reconciliation_id)
        shown = {i["source"][0]["id"]: i["source"][0]["amount"] for i in items if i["source"]}
        assert shown == {"s1": "12.345", "s2": "5.000", "s3": "7.25"}
        target = next(i for i in items if i["target"])["target"][0]
        assert (target["amount"], target["amount_minor"]) == ("99.000", 99000)

        projections.update(app.store, tenant_names=app.access.tenant_names())
        query = "SELECT record_ids[1] AS id, amount, amount_major FROM reconciliation_exceptions ORDER BY id"
        expected = {"s1": "12.345", "s2": "5.000", "s3": "7.250", "t1": "99.000"}
        model = app.read_model("reconciliation_exceptions")
        first_id = pl.col("record_ids").list.first().alias("id")
        for rows in (app.sql(query), projections.sql(data, query), model.select(first_id, "amount_major")):
            assert dict(zip(rows["id"], rows["amount_major"], strict=True)) == {
                k: Decimal(v) for k, v in expected.items()
            }


def test_a_retry_with_a_spec_read_again_shows_its_exponents(tmp_path: Path) -> None:
    """The spec a run last ran with counts: after a retry whose spec declares XTS: 3 (the first
    attempt's did not), 12.345 shows as 12.345, not 123.45."""
    (tmp_path / "source.csv").write_text(SOURCE)
    (tmp_path / "target.csv").write_text(TARGET)
    spec = tmp_path / "job.yaml"
    plain = SPEC.replace("  currency: {exponents: {xts: 3}}\n", "").replace(
        "  currency: {exponents: {XTS: 3}}\n", ""
    )
    spec.write_text(plain)
    data = tmp_path / "data"
    query = (
        "SELECT record_ids[1] AS id, amount_major FROM reconciliation_exceptions WHERE record_ids[1] = 's1'"
    )
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        run = app.reconcile(spec, start=DAY, end=DAY, execute=False).reconciliation_id
        app.cancel(run, "fix the spec first")
        spec.write_text(SPEC)
        assert app.retry(run, spec_path=spec).status == "completed"
        projections.update(app.store, tenant_names=app.access.tenant_names())
        assert app.sql(query)["amount_major"].to_list() == [Decimal("12.345")]


def test_sides_that_disagree_on_a_currencys_digits_are_refused_before_the_run(tmp_path: Path) -> None:
    """Amounts are compared in minor units: XTS with 3 digits on the source side and the table's 2 on
    the target side could never match, and would show with the wrong places."""
    (tmp_path / "source.csv").write_text(SOURCE)
    (tmp_path / "target.csv").write_text(TARGET)
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.replace("  currency: {exponents: {XTS: 3}}\n", ""))  # the target's declaration
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        head = app.store.head_position
        with pytest.raises(
            JobSpecError, match="XTS has 3 decimal places on the source side and 2"
        ) as refused:
            app.reconcile(spec, start=DAY, end=DAY)
        assert "same N on both sides" in (refused.value.hint or "")
        assert app.store.head_position == head  # nothing recorded
