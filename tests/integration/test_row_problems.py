"""Row problems stay row problems: amounts written with non-ASCII digits or beyond the matcher's range,
and over-long references, are quarantined with their line and reason while the run completes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DAY = date(2026, 11, 3)
BAD_AMOUNTS = {
    "€１２.００": "amount: cannot parse '€１２.００'",
    "１２３４": "amount: cannot parse '１２３４'",
    "0.١": "amount: cannot parse '0.١'",
    "(١٢)": "amount: cannot parse '(١٢)'",
    "99999999999999.99": "amount: 9999999999999999 minor units is beyond the largest amount matched",
    "-99999999999999.99": "amount: -9999999999999999 minor units is beyond the largest amount matched",
}


def test_bad_amounts_and_long_references_are_quarantined_per_line_and_the_run_completes(
    tmp_path: Path,
) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=300, start=DAY, days=2, seed=21)
    source = spec.parent / "source.csv"
    lines = source.read_text().splitlines()
    header, template = lines[0].split(","), lines[1].split(",")
    expected: dict[int, str] = {}
    for amount, reason in BAD_AMOUNTS.items():
        row = dict(zip(header, template, strict=True)) | {"amount": amount, "id": f"ch_bad_{len(expected)}"}
        lines.append(",".join(row[c] for c in header))
        expected[len(lines) - 1] = reason  # data line number: the header is line 0
    row = dict(zip(header, template, strict=True)) | {"id": "ch_" + "x" * 400}
    lines.append(",".join(row[c] for c in header))
    expected[len(lines) - 1] = "record_id: 403 characters, more than the 256 allowed"
    source.write_text("\n".join(lines) + "\n")

    with Settler(tmp_path / "data") as app:
        app.access.create_tenant("acme", admin=app.user)
        outcome = app.reconcile(spec, start=DAY, end=DAY)
        assert outcome.status == "completed"
        events = app.stream(outcome.reconciliation_id)
    quarantined = {
        data["line_number"]: data["reason"]
        for data in map(json.loads, events.filter(events["event_type"] == "RecordQuarantined")["data"])
        if data["side"] == "source"
    }
    for line, reason in expected.items():
        assert reason in quarantined[line], (line, quarantined.get(line))
    (fetched,) = [
        json.loads(d) for d in events.filter(events["event_type"] == "SourceRecordsFetched")["data"]
    ]
    assert fetched["quarantined_count"] == len(quarantined) >= len(expected)
    assert (
        fetched["total_rows"]
        == fetched["count"] + fetched["quarantined_count"] + fetched["out_of_window_count"]
    )
    assert fetched["total_rows"] == len(lines) - 1
