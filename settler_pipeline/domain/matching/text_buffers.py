"""Text columns copied into buffers of their own.

Polars keeps a text column's strings in shared buffers: filtering or gathering some of its rows
makes new views into the same buffers, so a few records kept from a block (or the margin records of
a run) would keep the text of every record of it alive for as long as they live.
"""

from __future__ import annotations

import polars as pl


def compacted(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its text (``String`` and ``List(String)`` columns) copied into buffers holding
    only its own strings; values, nulls and order unchanged."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    lists = [name for name, dtype in frame.schema.items() if dtype == pl.List(pl.String)]
    # Concatenating an empty string writes every string anew (nulls stay null).
    return frame.with_columns(
        *(pl.concat_str(pl.col(name), pl.lit("")).alias(name) for name in text),
        *(pl.col(name).list.eval(pl.concat_str(pl.element(), pl.lit(""))).alias(name) for name in lists),
    )
