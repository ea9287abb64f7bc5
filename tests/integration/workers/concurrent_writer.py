"""A writer racing others: appends batches to shared streams with ``expected_versions``, reloads the
stream versions with ``get_events`` and retries on a conflict, and records every acknowledged batch as
one JSON line. Usage: concurrent_writer.py DATA_DIR WRITER_NO BATCHES ACKS_FILE"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import polars as pl
from shared import AGGREGATE_TYPE, STREAMS, TENANT, mark

from settler_pipeline.domain.envelope import EventEnvelope, EventMetadata
from settler_pipeline.errors import ConcurrencyError
from settler_pipeline.store import limits, maintenance
from settler_pipeline.store.event_store import BULK_ROWS, EventStore

# Bulk batches go to the write-ahead tail, flushed (with stream copies) every few of them.
limits.WAL_FLUSH_ROWS = 5_000


def build(
    key: str, ids: list[str], per_stream: dict[str, int], flow: str, bulk: bool
) -> list[EventEnvelope] | pl.DataFrame:
    size = sum(per_stream.values())
    streams = [s for s, n in per_stream.items() for _ in range(n)]
    data = [mark(key, size, per_stream[s], k) for k, s in enumerate(streams)]
    if bulk:
        return pl.DataFrame(
            {
                "event_id": ids,
                "aggregate_id": streams,
                "aggregate_type": AGGREGATE_TYPE,
                "event_type": "BulkHappened",
                "data": data,
                "tenant_id": TENANT,
                "correlation_id": flow,
            }
        )
    return [
        EventEnvelope(
            id=i,
            aggregate_id=s,
            aggregate_type=AGGREGATE_TYPE,
            event_type="ThingHappened",
            data=json.loads(d),
            metadata=EventMetadata(tenant_id=TENANT, correlation_id=flow),
        )
        for i, s, d in zip(ids, streams, data, strict=True)
    ]


def main(data_dir: str, writer: int, batches: int, acks_path: str) -> None:
    rng = random.Random(writer)
    versions = dict.fromkeys(STREAMS, 0)
    with EventStore.open(data_dir) as store, Path(acks_path).open("w") as acks:
        for b in range(batches):
            key = f"w{writer}-b{b}"
            chosen = rng.sample(STREAMS, rng.randint(1, 3))
            bulk = b % 10 == 5
            per_stream = {s: (BULK_ROWS // len(chosen) + 1 if bulk else rng.randint(1, 3)) for s in chosen}
            size = sum(per_stream.values())
            ids = [f"{writer + 1:08x}-{b:04x}-7000-8000-{k:012x}" for k in range(size)]
            flow = f"{writer + 1:08x}-{b:04x}-7000-8000-ffffffffffff"
            batch = build(key, ids, per_stream, flow, bulk)
            conflicts = 0
            while True:
                try:
                    positions = store.append(batch, expected_versions={s: versions[s] for s in chosen})
                    break
                except ConcurrencyError as exc:
                    conflicts += 1
                    if conflicts > 500:
                        raise SystemExit(f"{key}: still conflicting after 500 reloads: {exc}") from exc
                    for s in chosen:  # reload what other writers added since
                        newer = store.get_events(s, AGGREGATE_TYPE, from_version=versions[s] + 1)
                        if newer:
                            versions[s] = newer[-1].aggregate_version or 0
            for s in chosen:
                versions[s] += per_stream[s]
            ack = {"batch": key, "event_ids": ids, "positions": positions, "conflicts": conflicts}
            acks.write(json.dumps(ack) + "\n")
            acks.flush()
            if writer == 0 and b % 8 == 7:
                maintenance.compact(store)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
