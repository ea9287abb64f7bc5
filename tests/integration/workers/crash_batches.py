"""The batches the crash worker appends, derived from the batch number alone, so the test that kills
the worker knows exactly what every acknowledged batch must look like in the log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

TENANT = "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"
AGGREGATE_TYPE = "Thing"
STREAMS = [f"0000000b-0000-7000-8000-{k:012x}" for k in range(5)]
SMALL_FRAME_ROWS = 50
BULK_BASE_ROWS = 2_000
FIRST_DAY = datetime(2026, 11, 1, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Batch:
    number: int
    kind: str  # "envelopes", "small frame" (write-ahead log) or "bulk frame" (straight to segments)
    frame: pl.DataFrame  # the input columns, in batch order


def batch(number: int) -> Batch:
    """Batch ``number``: envelopes of 1-5 events, a 50-event frame or a 2000-2999-event frame that
    spans two event dates, over several streams, with ids and content fixed by ``number``."""
    kind = ("envelopes", "envelopes", "small frame", "bulk frame")[number % 4]
    size = {
        "envelopes": 1 + number % 5,
        "small frame": SMALL_FRAME_ROWS,
        "bulk frame": BULK_BASE_ROWS + (number * 37) % 1000,
    }[kind]
    day = FIRST_DAY + timedelta(days=number % 3)
    frame = pl.DataFrame(
        {
            "event_id": [f"{number:08x}-0000-7000-8000-{k:012x}" for k in range(size)],
            "aggregate_id": [STREAMS[(number + k) % len(STREAMS)] for k in range(size)],
            "aggregate_type": AGGREGATE_TYPE,
            "event_type": [f"Happened{number % 3}"] * size,
            "data": [
                json.dumps({"batch": number, "k": k, "size": size}, separators=(",", ":"))
                for k in range(size)
            ],
            "tenant_id": TENANT,
            "correlation_id": f"{number:08x}-0000-7000-8000-ffffffffffff",
            "timestamp": pl.Series(
                [day + timedelta(days=k % 2 if kind == "bulk frame" else 0, seconds=k) for k in range(size)],
                dtype=pl.Datetime("us", "UTC"),
            ),
        }
    )
    return Batch(number, kind, frame)
