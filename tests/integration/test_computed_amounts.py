"""Computed amounts in a job spec: a processor export with gross and fee columns, mapped as
``amount: gross - fee``, matches a bank statement that shows the net payouts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from settler_pipeline.errors import JobSpecError
from settler_pipeline.jobspec import AmountExpression, AmountTerm, parse_amount_expression
from settler_pipeline.session import Settler

DAY = date(2026, 11, 2)

SOURCE = """id,created,gross,fee,currency,description
ch_1,2026-11-02 09:00:00,100.00,3.20,EUR,Order 1001
ch_2,2026-11-02 10:00:00,250.00,7.55,EUR,Order 1002
ch_3,2026-11-02 11:00:00,45.50,,EUR,Order 1003
ch_4,2026-11-02 12:00:00,oops,1.00,EUR,Order 1004
ch_5,2026-11-02 13:00:00,,,EUR,Order 1005
"""
TARGET = """booking,date,amount,currency,text
BT1,2026-11-03,96.80,EUR,PAYOUT 1001
BT2,2026-11-03,242.45,EUR,PAYOUT 1002
BT3,2026-11-03,45.50,EUR,PAYOUT 1003
"""
SPEC = """name: gross-fee
source:
  adapter: csv
  path: source.csv
  columns:
    record_id: id
    occurred_at: created
    amount: "{amount}"
    currency: currency
    description: description
target:
  adapter: csv
  path: target.csv
  columns: {{record_id: booking, occurred_at: date, amount: amount, currency: currency, description: text}}
matching:
  passes:
    - kind: amount_date
"""


def write(folder: Path, amount: str) -> Path:
    (folder / "source.csv").write_text(SOURCE)
    (folder / "target.csv").write_text(TARGET)
    spec = folder / "job.yaml"
    spec.write_text(SPEC.format(amount=amount))
    return spec


def test_gross_minus_fee_matches_a_net_bank_statement(tmp_path: Path) -> None:
    spec = write(tmp_path, "gross - fee")
    with Settler(tmp_path / "data", user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        outcome = app.reconcile(spec, start=DAY, end=DAY)
        state, items = app.review_items(outcome.reconciliation_id)
    assert outcome.status == "completed" and outcome.summary is not None
    assert outcome.summary["matched_count"] == 3  # ch_3 has no fee: a blank term counts as 0
    assert outcome.summary["quarantined_count"] == 2  # a bad gross, and a row whose terms are all empty
    reasons = sorted(i["reason"] for i in items if i["kind"] == "quarantined")
    assert reasons[0].startswith("amount (gross): cannot parse 'oops'")
    assert reasons[1] == "amount: missing (gross - fee are all empty)"
    assert state.counts.unmatched_source == 0 and state.counts.unmatched_target == 0


def test_mapping_gross_alone_misses_every_pair_and_review_shows_the_difference(tmp_path: Path) -> None:
    spec = write(tmp_path, "gross")
    with Settler(tmp_path / "data", user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        outcome = app.reconcile(spec, start=DAY, end=DAY)
        _, items = app.review_items(outcome.reconciliation_id)
    assert outcome.summary is not None and outcome.summary["matched_count"] == 1  # only the fee-less one
    mismatched = [i for i in items if i["kind"] == "unmatched" and i["source"]]
    assert mismatched and all(i.get("closest") for i in mismatched)
    assert {i["closest"]["amount_difference"] for i in mismatched} == {"-3.20", "-7.55"}


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("gross - fee", [(1, "gross"), (-1, "fee")]),
        ("net + tip - fee", [(1, "net"), (1, "tip"), (-1, "fee")]),
        ("- amount", [(-1, "amount")]),
        ("-amount", [(-1, "amount")]),
        ("net-amount", None),  # no spaces: one column name
        ("amount", None),
    ],
)
def test_amount_expressions_parse_into_signed_columns(text: str, terms: list[tuple[int, str]] | None) -> None:
    parsed = parse_amount_expression(text)
    if terms is None:
        assert parsed is None
    else:
        assert parsed == AmountExpression(terms=[AmountTerm(sign=s, column=c) for s, c in terms])  # type: ignore[arg-type]
        assert parse_amount_expression(str(parsed)) == parsed


def test_a_missing_expression_column_names_the_amount_and_the_column(tmp_path: Path) -> None:
    spec = write(tmp_path, "gross - fees")
    with Settler(tmp_path / "data", user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        # checked before a run starts: no run is recorded
        with pytest.raises(JobSpecError, match=r"columns\.amount names column 'fees'"):
            app.reconcile(spec, start=DAY, end=DAY)


def test_a_run_reports_its_steps_for_the_progress_bar(tmp_path: Path) -> None:
    spec = write(tmp_path, "gross - fee")
    steps: list[tuple[str, int, int]] = []
    with Settler(tmp_path / "data", user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        app.service.progress = lambda what, done, total: steps.append((what, done, total))
        app.reconcile(spec, start=DAY, end=DAY)
    assert [done for _, done, _ in steps] == [0, 1, 2, 3, 3, 4, 5]  # one step per matching pass
    assert steps[0][0] == "reading the source (csv)" and steps[-1] == ("done", 5, 5)
    assert steps[4][0] == "matching: pass 1 of 1 (amount_date)"
