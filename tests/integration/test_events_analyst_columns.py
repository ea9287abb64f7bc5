"""The analysts' ``events`` table carries the analyst columns like every read model: ``tenant`` right
after ``tenant_id`` and ``amount_major`` right after ``amount``, in ``settler sql`` and in
``analytics.duckdb`` alike; ``settler events --json`` shows each event's tenant, user and flow."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from settler_pipeline import projections
from settler_pipeline.cli.main import app
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler


def test_events_show_tenant_names_and_major_amounts(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=40, start=date(2026, 11, 1), days=1, seed=3)
    data = tmp_path / "data"
    with Settler(data, user="alice") as settler:
        settler.access.create_tenant("acme", admin="alice")
        settler.reconcile(spec, start=date(2026, 11, 1), end=date(2026, 11, 1))
        projections.update(settler.store, tenant_names=settler.access.tenant_names())
        query = (
            "SELECT tenant, amount, currency, amount_major FROM events "
            "WHERE event_type = 'RecordMatched' AND currency = 'EUR' ORDER BY global_position LIMIT 5"
        )
        for rows in (settler.sql(query), projections.sql(data, query)):
            assert rows.height > 0 and set(rows["tenant"]) == {"acme"}
            assert [Decimal(a) / 100 for a in rows["amount"]] == rows["amount_major"].to_list()
        for columns in (
            settler.sql("SELECT * FROM events LIMIT 1").columns,
            projections.sql(data, "SELECT * FROM events LIMIT 1").columns,
        ):
            assert columns[columns.index("tenant_id") + 1] == "tenant"
            assert columns[columns.index("amount") + 1] == "amount_major"
    env = {"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "alice"}
    shown = CliRunner().invoke(app, ["events", "--json", "--limit", "3"], env=env)
    assert shown.exit_code == 0, shown.output
    first = json.loads(shown.stdout)[0]
    assert first["tenant"] == "acme" and first["user_id"] == "alice"
    assert first["tenant_id"] and first["correlation_id"] and first["event_id"]


def test_an_amount_in_a_currency_no_read_model_holds_keeps_every_digit_in_the_analysts_events(
    tmp_path: Path,
) -> None:
    # A run's events stay in the log after the run is superseded, while the read models drop its
    # items: the events' KWD amount (three places) must not be rounded to the read models' two.
    day = date(2026, 11, 1)
    spec, _ = write_sample_job(tmp_path / "inputs", records=40, start=day, days=1, seed=3)
    source = spec.parent / "source.csv"
    corrected = source.read_text()
    source.write_text(corrected + "ch_kwd,2026-11-01 01:00:00,1.234,kwd,Invoice X,charge,Eve,,\n")
    data = tmp_path / "data"
    with Settler(data, user="alice") as settler:
        settler.access.create_tenant("acme", admin="alice")
        settler.reconcile(spec, start=day, end=day)
        source.write_text(corrected)
        settler.reconcile(spec, start=day, end=day, supersede=True)
        projections.update(settler.store, tenant_names=settler.access.tenant_names())
        held = "SELECT count(*) AS n FROM reconciliation_exceptions WHERE currency = 'KWD'"
        assert projections.sql(data, held)["n"][0] == 0
        query = "SELECT amount, amount_major FROM events WHERE currency = 'KWD'"
        for rows in (settler.sql(query), projections.sql(data, query)):
            assert rows.height > 0 and set(rows["amount"]) == {1234}
            assert rows["amount_major"].to_list() == [Decimal("1.234")] * rows.height
