"""The Markdown preview a read model's materialization shows in the Dagster UI renders the values of
the exports as text: a record id or reference cannot become a link, an image or HTML there."""

from __future__ import annotations

import polars as pl
from markdown_it import MarkdownIt

from dagster_project.catalog import markdown_preview

HOSTILE = [
    "![x](https://attacker.example/p.png)",
    "<img src=x onerror=alert(1)>",
    "[pay here](javascript:alert(1))",
    "https://attacker.example/",
    "**bold** `code` # | &amp;",
]


def test_values_from_the_exports_render_as_the_text_they_are() -> None:
    frame = pl.DataFrame({"record_ids": HOSTILE, "amount": list(range(len(HOSTILE)))})
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_preview(frame))
    for tag in ("<img", "<a ", "<strong", "<code", "<h1"):
        assert tag not in html, (tag, html)
    assert html.count("<tr>") == len(HOSTILE) + 1  # one row each: no value broke the table
    cells = [c.split("</td>")[0] for c in html.split("<td>")[1::2]]
    assert cells[:2] == ["![x](https://attacker.example/p.png)", "&lt;img src=x onerror=alert(1)&gt;"]


def test_long_and_multi_line_values_are_cut_to_one_line() -> None:
    text = markdown_preview(pl.DataFrame({"a": ["line\r\nbreak\ttab " + "y" * 60]}))
    row = text.splitlines()[2]
    assert row.startswith("| line break tab yyy") and row.endswith("… |") and len(row) < 50
