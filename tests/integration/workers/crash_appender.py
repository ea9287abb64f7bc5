"""Appends batch after batch (see ``crash_batches``), publishing and compacting now and then, until it is
killed, printing ``BEGIN <batch>``
before each append and ``ACK <batch> <first position> <last position>`` after it returned.

It imports everything first and then waits for ``GO <first batch>`` on stdin, so the test can start
the next life of the worker while the current one still runs; on ``GO`` it opens (and so recovers)
the store and prints ``READY <head>``. Usage: crash_appender.py DATA_DIR"""

from __future__ import annotations

import json
import sys

from crash_batches import batch

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.store import limits, maintenance
from settler_pipeline.store.event_store import EventStore

# Flush the write-ahead log often, so kills also land in flushes and not only in appends.
limits.WAL_FLUSH_ROWS = 120


def envelopes(number: int) -> list[EventEnvelope]:
    rows = batch(number).frame.iter_rows(named=True)
    return [
        EventEnvelope(
            id=row["event_id"],
            aggregate_id=row["aggregate_id"],
            aggregate_type=row["aggregate_type"],
            event_type=row["event_type"],
            data=json.loads(row["data"]),
            metadata=EventMetadata(
                tenant_id=row["tenant_id"], correlation_id=row["correlation_id"], timestamp=row["timestamp"]
            ),
        )
        for row in rows
    ]


def main(data_dir: str) -> None:
    command = sys.stdin.readline().split()
    if command[:1] != ["GO"]:
        return
    first = int(command[1])
    store = EventStore.open(data_dir)
    print(f"READY {store.head_position}", flush=True)
    number = first
    while True:
        spec = batch(number)
        print(f"BEGIN {number}", flush=True)
        result = store.append_batch(envelopes(number) if spec.kind == "envelopes" else spec.frame)
        tag = " retry" if result.duplicate else ""
        print(f"ACK {number} {result.positions[0]} {result.positions[-1]}{tag}", flush=True)
        if number % 16 == 15:
            maintenance.compact(store)
        elif number % 5 == 4:
            store.publish()  # kills also land in publishes (tail flush + Delta commit)
        number += 1


if __name__ == "__main__":
    main(sys.argv[1])
