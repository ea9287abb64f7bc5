"""docs/read-models.md documents every published table and column."""

from __future__ import annotations

from pathlib import Path

from settler_pipeline.projections.runner import READ_MODELS
from settler_pipeline.projections.status import STATUS_COLUMNS, STATUS_NAME

DOC = Path(__file__).resolve().parents[2] / "docs" / "read-models.md"


def _section(text: str, name: str) -> str:
    start = text.index(f"### {name}\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_read_model_and_column_is_documented_in_its_section() -> None:
    text = DOC.read_text()
    for read_model in READ_MODELS:
        section = _section(text, read_model.name)
        for column in read_model.columns:
            assert f"| `{column.name}` |" in section, (read_model.name, column.name)
    status = _section(text, STATUS_NAME)
    assert all(f"| `{c.name}` |" in status for c in STATUS_COLUMNS)
