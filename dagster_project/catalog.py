"""What the Dagster catalog shows about Settler's tables: owners, kinds, column schemas from the read
models' column docs, and a Markdown preview of a table's first rows."""

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import dagster as dg
import polars as pl

from settler_pipeline.projections.projection import Column

OWNERS: Final = ["team:settler"]
KINDS: Final = {"polars", "parquet", "duckdb"}
PREVIEW_ROWS: Final = 5
PREVIEW_COLUMNS: Final = 8  # wider tables are cut (the preview is for a glance, SQL is for reading)

# What an asset returns. Unsubscripted at run time on purpose: Dagster reads a subscripted return
# annotation of an asset with checks as a tuple of outputs and refuses to load it.
if TYPE_CHECKING:
    Materialization = dg.MaterializeResult[Any]
else:
    Materialization = dg.MaterializeResult


def table_schema(columns: Sequence[Column]) -> dg.TableSchema:
    """The published columns of a read model, with their documentation."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=c.name, type=str(c.dtype), description=c.doc) for c in columns]
    )


_MARKDOWN: Final = re.compile(r"[\\`*_{}\[\]()<>#+\-.!|~&:]")


def markdown_preview(frame: pl.DataFrame) -> str:
    """The first rows of ``frame`` as a Markdown table (cells cut to 40 characters)."""
    shown = frame.select(frame.columns[:PREVIEW_COLUMNS]).head(PREVIEW_ROWS)
    if not shown.columns:
        return "(no columns)"

    def cell(value: object) -> str:
        text = " ".join(("" if value is None else str(value)).split())
        text = text if len(text) <= 40 else text[:39] + "…"
        # Cells hold text from the exports (record ids, references): every Markdown character is
        # escaped, so a value cannot become a link, an image fetched from elsewhere, or HTML in the UI.
        return _MARKDOWN.sub(r"\\\g<0>", text)

    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.iter_rows()]
    if frame.width > PREVIEW_COLUMNS:
        lines.append(f"\n{frame.width - PREVIEW_COLUMNS} more columns; {frame.height} rows in all.")
    return "\n".join(lines)
