"""Tables for people: ids and short codes stay whole on one line, free text takes the wrapping."""

from __future__ import annotations

import pytest

from settler_pipeline.cli import output
from settler_pipeline.cli.review import _detail


def test_short_codes_stay_on_one_line_and_free_text_wraps(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output.console, "width", 140)  # piped output's width, whatever COLUMNS says
    rows = [
        {
            "id": f"unmatched:source:ch_{k:024d}",
            "kind": "unmatched",
            "reason": "missing_settlement",
            "source": "ch_396fYj0PtSmFa6h8GUZlspVi 2026-11-05 11.56 USD ref INV-000946 “Invoice INV-000946”",
            "target": "BT0040000764 2026-11-06 611.54 USD “TRANSFER FROM SARA SCHNEIDER”",
            "detail": "closest BT0040000760 11.59 USD (difference 0.03): matched_elsewhere " * 3,
        }
        for k in range(3)
    ]
    output.emit_table("items", rows)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 140
    for row in rows:
        assert any(row["id"] in line and "missing_settlement" in line for line in lines), out
    assert sum("│" in line for line in lines) > len(rows) + 1, "the free text wrapped over several lines"


@pytest.mark.parametrize(
    ("days", "said"), [(0, "the same day"), (1, "1 day apart"), (-1, "-1 day apart"), (3, "3 days apart")]
)
def test_a_proposals_days_apart_read_as_english(days: int, said: str) -> None:
    item = {
        "kind": "proposed",
        "rule": "amount_date",
        "confidence": 0.9,
        "amount_difference": "0.00",
        "currency": "USD",
        "date_difference_days": days,
    }
    assert _detail(item).endswith(said)
