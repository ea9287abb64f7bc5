"""What the worker scripts share: the streams they write to and how a batch is marked in its data."""

from __future__ import annotations

import json

import polars as pl

TENANT = "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"
AGGREGATE_TYPE = "Thing"
STREAMS = [f"0000000a-0000-7000-8000-{k:012x}" for k in range(6)]
MARK = pl.Struct({"batch": pl.String, "size": pl.Int64, "in_stream": pl.Int64, "k": pl.Int64})


def mark(batch: str, size: int, in_stream: int, k: int) -> str:
    """The ``data`` of event ``k`` of a batch: its batch key, the batch's size and how many of its
    events went to this event's stream, so a reader can tell a whole batch from part of one."""
    return json.dumps({"batch": batch, "size": size, "in_stream": in_stream, "k": k})


def incomplete_batches(frame: pl.DataFrame, *, per_stream: bool) -> pl.DataFrame:
    """Batches of ``frame`` (stored events) that are not there in full, or not in consecutive positions."""
    marked = frame.with_columns(pl.col("data").str.json_decode(MARK).alias("m")).unnest("m")
    expected = pl.col("in_stream").first() if per_stream else pl.col("size").first()
    summary = marked.group_by("batch").agg(
        pl.len().alias("n"),
        expected.alias("expected"),
        (pl.col("global_position").max() - pl.col("global_position").min() + 1).alias("span"),
    )
    bad = pl.col("n") != pl.col("expected")
    if not per_stream:
        bad = bad | (pl.col("span") != pl.col("n"))
    return summary.filter(bad)
