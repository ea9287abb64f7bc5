"""A reader beside the writers: reads the whole log and every shared stream again and again until a
stop file appears, and fails (exit 1) the moment it sees a gap, half a batch or a version hole.
Prints one JSON line with how often it read. Usage: concurrent_reader.py DATA_DIR STOP_FILE"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
from shared import AGGREGATE_TYPE, STREAMS, incomplete_batches

from settler_pipeline.store.event_store import EventStore


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def main(data_dir: str, stop_file: str) -> None:
    reads = retired = 0
    last_head = 0
    with EventStore.open(data_dir) as store:
        while True:
            stopping = Path(stop_file).exists()
            try:
                frame = store.read().collect()
            except FileNotFoundError:
                retired += 1  # compaction retired a file of this read's manifest: read again
                continue
            positions = frame["global_position"].to_list()
            if positions != list(range(1, len(positions) + 1)):
                fail(f"read {reads}: positions are not 1..{len(positions)}")
            if len(positions) < last_head:
                fail(f"read {reads}: the log shrank from {last_head} to {len(positions)}")
            last_head = len(positions)
            broken = incomplete_batches(frame, per_stream=False)
            if broken.height:
                fail(f"read {reads}: partial batches in read():\n{broken}")
            for stream in STREAMS:
                events = store.get_events(stream, AGGREGATE_TYPE)
                versions = [e.aggregate_version for e in events]
                if versions != list(range(1, len(versions) + 1)):
                    fail(f"read {reads}: stream {stream} has versions {versions[:5]}...")
                rows = pl.DataFrame(
                    {
                        "global_position": [e.global_position for e in events],
                        "data": [json.dumps(e.data) for e in events],
                    },
                    schema={"global_position": pl.Int64, "data": pl.String},
                )
                broken = incomplete_batches(rows, per_stream=True)
                if broken.height:
                    fail(f"read {reads}: partial batches in stream {stream}:\n{broken}")
            reads += 1
            if stopping:
                break
    print(json.dumps({"reads": reads, "retired_retries": retired, "head": last_head}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
