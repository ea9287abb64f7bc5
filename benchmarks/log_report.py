"""The "event log on interleaved work" section of docs/benchmarks.md, rendered from
``benchmarks/results/log.json`` (written by ``make bench`` with ``BENCH_ONLY=log``)."""

from __future__ import annotations

from typing import Any

from benchmarks.bench_log import BATCHES, PER_BATCH, STREAMS


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def _per_size(small_ok: bool | None, big_ok: bool | None) -> str:
    """One verdict for a target judged at both sizes, saying which size missed when only one did."""
    judged = [ok for ok in (small_ok, big_ok) if ok is not None]
    if all(judged) or not any(judged):
        return _verdict(all(judged) if judged else None)
    return f"200k {_verdict(small_ok)}, 10M {_verdict(big_ok)}"


def _load(figures: dict[str, Any]) -> str:
    load = figures.get("load_average")
    return "/".join(f"{x:.1f}" for x in load) if load else "?"


def section(log: dict[str, Any], table: Any) -> list[str]:
    """Markdown lines of the section; ``table(header, rows)`` renders a table."""
    m, r = log["machine"], log["results"]
    anchor = r["anchor_200k"]
    sizes = sorted(int(k.removeprefix("settler_")) for k in r if k.startswith("settler_"))
    small = r.get("settler_200000")
    big = r.get(f"settler_{sizes[-1]}") if sizes and sizes[-1] > 200_000 else None
    big_label = f"{_fmt(sizes[-1])} events" if big else "(not run)"

    def cell(figures: dict[str, Any] | None, key: str, unit: str, digits: int = 0) -> str:
        return f"{_fmt(figures[key], digits)}{unit}" if figures else "not run"

    def ratio(figures: dict[str, Any] | None, key: str, anchor_key: str) -> float:
        return figures[key] / anchor[anchor_key] if figures else 0.0

    append_ratio = ratio(small, "columnar_append_existing_events_per_s", "batch_append_existing_events_per_s")
    append_ok = (
        all(f["columnar_append_existing_events_per_s"] >= 1_000_000 for f in (small, big) if f)
        and append_ratio >= 30
    )
    rows = [
        [
            f"columnar append to existing streams, {_fmt(STREAMS * PER_BATCH)}-event batches",
            "≥ 1M events/s and ≥ 30× anchor",
            cell(small, "columnar_append_existing_events_per_s", " events/s") + f" ({append_ratio:.1f}×)",
            cell(big, "columnar_append_existing_events_per_s", " events/s"),
            f"{_fmt(anchor['batch_append_existing_events_per_s'])} events/s",
            _verdict(append_ok),
        ],
        [
            "envelope-object append (10k envelopes per call)",
            "≥ 5× anchor",
            cell(small, "envelope_append_events_per_s", " events/s")
            + f" ({ratio(small, 'envelope_append_events_per_s', 'batch_append_existing_events_per_s'):.1f}×)",
            cell(big, "envelope_append_events_per_s", " events/s"),
            f"{_fmt(anchor['batch_append_existing_events_per_s'])} events/s",
            _verdict(ratio(small, "envelope_append_events_per_s", "batch_append_existing_events_per_s") >= 5),
        ],
        [
            "one-event commit, name-based (UUIDv5) id + expected version",
            f"p50 ≤ 1 ms at {big_label}",
            (f"p50 {small['named_commit_p50_ms']:.2f} ms (p99 {small['named_commit_p99_ms']:.1f})")
            if small
            else "not run",
            (f"p50 {big['named_commit_p50_ms']:.2f} ms (p99 {big['named_commit_p99_ms']:.1f})")
            if big
            else "not run",
            f"p50 {anchor['commit_p50_ms']:.2f} ms",
            _verdict(big["named_commit_p50_ms"] <= 1.0 if big else None),
        ],
        [
            f"load one {PER_BATCH * BATCHES}-event stream written in {BATCHES} batches (envelopes)",
            "≤ anchor at 200k, ≤ 5 ms at 10M",
            f"p50 {small['stream_load_p50_ms']:.2f} ms" if small else "not run",
            f"p50 {big['stream_load_p50_ms']:.2f} ms" if big else "not run",
            f"p50 {anchor['stream_load_p50_ms']:.2f} ms",
            _per_size(
                small["stream_load_p50_ms"] <= anchor["stream_load_p50_ms"] if small else None,
                big["stream_load_p50_ms"] <= 5.0 if big else None,
            ),
        ],
        [
            "… the same stream as a Polars frame (`stream_frame`)",
            "(reported)",
            f"p50 {small['stream_frame_p50_ms']:.2f} ms" if small and "stream_frame_p50_ms" in small else "",
            f"p50 {big['stream_frame_p50_ms']:.2f} ms" if big and "stream_frame_p50_ms" in big else "",
            "",
            "—",
        ],
        [
            "publish 10,000 tail events into the Delta table (`publish`)",
            "(reported; an incremental read-model update pays it first)",
            f"p50 {small['publish_10k_p50_ms']:.0f} ms" if small and "publish_10k_p50_ms" in small else "",
            f"p50 {big['publish_10k_p50_ms']:.0f} ms" if big and "publish_10k_p50_ms" in big else "",
            "",
            "—",
        ],
        [
            "full read",
            "≥ 30× anchor's replay",
            cell(small, "full_read_events_per_s", " events/s")
            + f" ({ratio(small, 'full_read_events_per_s', 'replay_events_per_s'):.0f}×)",
            cell(big, "full_read_events_per_s", " events/s"),
            f"{_fmt(anchor['replay_events_per_s'])} events/s",
            _per_size(
                *(
                    f["full_read_events_per_s"] >= 30 * anchor["replay_events_per_s"] if f else None
                    for f in (small, big)
                )
            ),
        ],
    ]
    split = [
        f"{label}: a batch committing to the tail p50 {f['tail_batch_p50_ms']:.1f} ms, a batch flushing the "
        f"tail into segments p50 {f['flushing_batch_p50_ms']:.0f} ms ({f['flushes']} of them)"
        for label, f in (("200k", small), (big_label, big))
        if f and f.get("flushing_batch_p50_ms") is not None
    ]
    loads = ", ".join(
        f"{name.removeprefix('settler_').replace('anchor_200k', 'anchor')}: {_load(fig)}"
        for name, fig in r.items()
    )
    return [
        f"## The event log on interleaved work (`python -m benchmarks.bench_log 200000 {sizes[-1]}`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['date']}; "
        "raw figures in `benchmarks/results/log.json`.",
        f"Load average (1/5/15 min) when each part finished: {loads}. Figures taken above a load of 3 are "
        "not trustworthy.",
        f"Workload: streams of {PER_BATCH * BATCHES} events, each written in {BATCHES} batches (every "
        f"{_fmt(STREAMS * PER_BATCH)}-event columnar batch appends {PER_BATCH} events to each of "
        f"{_fmt(STREAMS)} existing streams); eventsourcing (SQLite) does the same work in the same run at "
        "200k events. Loads and commits are medians (60 loads, 1,000 commits), reads the median of 3.",
        "",
        table(["what", "target", "200k events", big_label, "eventsourcing (200k)", "verdict"], rows),
        "",
        *([f"Where the append time goes: {'; '.join(split)}.", ""] if split else []),
        *NOTES,
        "",
    ]


NOTES = [
    'How the log does this work (details in `docs/architecture.md`, "Interleaved work"):',
    "",
    "* **Appends.** A batch under 50,000 events is one write-ahead record (Arrow IPC, `pwritev` +",
    "  `fdatasync`); the tail goes into segments once it holds 200,000 events. Stream versions come from",
    "  the writer's in-memory stream heads, and a batch of fresh time-ordered ids needs no idempotency",
    "  lookup. A 10k-event batch committing to the tail pays its checks (one Polars pass when the batch",
    "  is plainly valid: ~3 ms on a quiet machine, ~6 ms as some twenty passes before), numbering (~4",
    "  ms) and the record's encode, write and sync (~5 ms). The flush pays, per 200k events: typing the",
    "  tail's payload columns from their JSON (~135 ms quiet; ~210 ms before it skipped a join and a",
    "  sort when every row of one type decodes), the segment with its index rows (~350 ms), the index",
    "  transaction with DuckDB's checkpoint (~100-200 ms) and the Delta commit, and the stream copy on a",
    "  second thread (grouped by stream with a stable sort on the id's hash, ~20 ms instead of 70-100",
    "  ms sorting the id text, then the Parquet write). That is still ~4-6 µs per event where 1M",
    "  events/s allows 1 µs, and on two shared cores the copy thread competes with the typing rather",
    "  than running beside it; the columnar path reaches ~1M events/s only with big batches that bring",
    "  their typed columns (the store benchmark's 1M-event batches skip the tail, the copy and the",
    "  typing). Typing each batch when it is appended would move that cost, not remove it. Both append",
    "  targets are missed by a factor of 6-8 for that reason.",
    "* **Envelope objects** pay one pass of Python over the envelopes (their attributes and the",
    "  canonical JSON of each payload, ~2.5 µs per event) before the same columnar path, so 5× the",
    "  anchor (~27 ms per 10k envelopes) is below what that pass plus the tail commit costs.",
    "* **Publish** (the tail into the Delta table: what `settler project` and the Dagster assets pay",
    "  before reading new events) pays per call, whatever the tail's size: the DuckDB index transaction",
    "  and its checkpoint at detach (DuckDB rewrites the last row group of each index table it touched,",
    "  ~20-60 ms), the Delta commit (~15 ms of CPU plus two syncs), the segment's and the copy's writes",
    "  and syncs, and typing the payloads (~25 ms per 10k). Measured and dropped: keeping the Delta",
    "  table open between commits (bringing it up to date cost as much as reading it afresh), and",
    "  leaving DuckDB's checkpoint to a size threshold (every read-only attach then replayed the index's",
    "  write-ahead file: 1.8 ms per index query became ~8 ms). The index schema is applied once per",
    "  process (~3 ms per write before). Publishing 10k events stays ~100-250 ms, above the ~70 ms the",
    "  whole incremental read-model update should take; that needs the index and the copy off the",
    "  publish's critical path, not done here.",
    "* **Stream loads.** Each segment written from the tail (or by compaction) gets a *stream copy*: the",
    "  same rows grouped by stream in LZ4-compressed row groups of 512 without dictionary pages, named",
    "  in the index per stream. A stream written in 20 commits is then one row-group read instead of",
    "  20. A load finds the stream's run in that group with one comparison over its stream ids, slices",
    "  it out without copying, and builds the envelopes straight from the Arrow columns (one JSON parse,",
    "  each distinct time converted once, the pydantic slots set through their descriptors, ~1.5 µs per",
    "  event). Measured per load on a quiet machine: the row-group read ~0.2 ms, the slice ~0.05 ms, the",
    "  envelopes ~0.25 ms, the view and granule lookups ~0.02 ms. Before: the same read ~0.3 ms, a",
    "  conversion to Polars, a filter and a sort ~0.4 ms, envelopes ~0.8 ms, and ~0.15 ms rebuilding",
    "  the view on every read once a flush had removed the write-ahead file. The writer process and a",
    "  fresh one now measure alike (0.75-0.95 ms and 0.82-0.98 ms at a load of 4-5). What is left is",
    "  mostly Python building 200 model instances. A stream with events in the write-ahead tail gathers",
    "  them by their offsets (kept with the tail's stream map): p50 1.1 ms from a 190k-event tail",
    "  where filtering the whole tail took 4.4 ms. An uncompressed Arrow IPC copy read through a",
    "  memory map (7× the disk) measured the same load time as the Parquet copy, so the format is",
    "  kept. eventsourcing answers from a SQLite B-tree with the stream's rows adjacent and builds no",
    "  objects beyond the decoded JSON. The 200k target is missed in the writer process: 1.94 against",
    "  0.72 ms in the run above (the quietest of the day, load 1.9), while the day's other runs of",
    "  this code measured 0.99-1.82 ms against the anchor's 0.74-1.46 ms, and the same load right",
    "  after the same appends outside the benchmark's process 0.75-0.90 ms: the 200k figure swings",
    "  with what else the process and the machine did just before more than any part of the load",
    "  path measured above; before this code it was 3.5-4.8× the anchor.",
    "* **Before and after this code,** alternating at 200k in one run (load 5-8, where wall times are",
    "  not trustworthy, but both ran under it): stream load p50 3.88 and 3.50 ms before, 1.29 and 0.99",
    "  ms after (the anchor 0.83, 0.98 | 1.46, 0.74 in the same processes' runs); tail commit p50 53 and",
    "  36 ms before, 30 and 26 ms after; flushing batch 2,087 and 998 ms before, 1,194 and 710 ms after;",
    "  columnar append 60k and 116k events/s before, 108k and 162k after; envelopes 100k and 98k before,",
    "  125k and 129k after; publishing 10k events 243 and 102 ms after (not measured before). The",
    "  append figures swing with the load about as much as with the code.",
    "* **Full reads** scan the position-ordered segments only (stream copies are never read for them);",
    "  on two shared cores they are the figure that moves most with the load average above: the day's",
    "  runs of this code read 10M events at 3.2-9.4M events/s (the slowest at a load of 4.6), 200k at",
    "  5.8-11M events/s.",
    "* **One-event commits** are the write-ahead append and `fdatasync` plus exact lookups (a",
    "  name-based id is looked up in an in-memory map, never by scanning); the sync dominates and",
    "  depends on the disk's contention at the time. Before the durability work (framed records, the",
    "  recorded head) a small commit measured p50 0.45 ms at 10M on a quiet machine; it now adds a",
    "  16-byte `pwrite` of the head (no second sync), compare the row above.",
]
