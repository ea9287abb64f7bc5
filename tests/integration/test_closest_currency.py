"""The closest candidate of an unmatched record is shown in its own currency: a record in JPY whose
closest candidate is in EUR (rejected as ``currency_differs``) shows that candidate as EUR with two
decimals, and no difference across the two currencies, in review and in the read models."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from settler_pipeline import projections
from settler_pipeline.session import Settler

DAY = date(2026, 11, 2)
COLUMNS = "{record_id: id, occurred_at: date, amount: amount, currency: currency, reference: reference}"
SPEC = f"""name: two-currencies
source: {{adapter: csv, path: source.csv, columns: {COLUMNS}}}
target: {{adapter: csv, path: target.csv, columns: {COLUMNS}}}
matching:
  passes:
    - kind: reference
"""


def test_the_closest_candidate_keeps_its_own_currency(tmp_path: Path) -> None:
    (tmp_path / "source.csv").write_text("id,date,amount,currency,reference\ns1,2026-11-02,1000,JPY,INV-77\n")
    (tmp_path / "target.csv").write_text("id,date,amount,currency,reference\nt1,2026-11-02,9.50,EUR,INV-77\n")
    (tmp_path / "job.yaml").write_text(SPEC)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        outcome = app.reconcile(tmp_path / "job.yaml", start=DAY, end=DAY)
        _, items = app.review_items(outcome.reconciliation_id)
        closest = next(i for i in items if i["id"] == "unmatched:source:s1")["closest"]
        assert closest["id"] == "t1" and closest["rejection"] == "currency_differs"
        assert (closest["amount"], closest["currency"], closest["amount_difference"]) == ("9.50", "EUR", None)

        projections.update(app.store, tenant_names=app.access.tenant_names())
        query = (
            "SELECT currency, amount_major, closest_currency, closest_amount, closest_amount_major "
            "FROM reconciliation_exceptions WHERE exception_id = 'unmatched:source:s1'"
        )
        for rows in (app.sql(query), projections.sql(data, query)):
            assert rows.row(0) == ("JPY", Decimal("1000.00"), "EUR", 950, Decimal("9.50"))


def test_a_closest_amount_keeps_the_places_of_its_own_currency() -> None:
    import polars as pl

    from settler_pipeline.query import _currencies, with_analyst_columns

    rows = pl.LazyFrame(
        {
            "reconciliation_id": ["r"],
            "currency": ["EUR"],
            "amount": [913],
            "closest_currency": ["KWD"],
            "closest_amount": [9125],
        }
    )
    shown = with_analyst_columns(rows, {}, _currencies(rows)).collect()
    assert shown["amount_major"].to_list() == [Decimal("9.130")]
    assert shown["closest_amount_major"].to_list() == [Decimal("9.125")]
