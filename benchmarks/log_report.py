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


def _reported_p50(
    what: str, target: str, small: dict[str, Any] | None, big: dict[str, Any] | None, key: str, digits: int
) -> list[str]:
    """A reported (untargeted) row of ``<key>_p50_ms`` at both sizes."""

    def cell(figures: dict[str, Any] | None) -> str:
        name = f"{key}_p50_ms"
        return f"p50 {figures[name]:.{digits}f} ms" if figures and name in figures else ""

    return [what, target, cell(small), cell(big), "", "—"]


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
        _reported_p50(
            "… the same stream as a Polars frame (`stream_frame`)",
            "(reported)",
            small,
            big,
            "stream_frame",
            2,
        ),
        _reported_p50(
            "publish 10,000 tail events into the Delta table (`publish`)",
            "(reported; an incremental read-model update pays it first)",
            small,
            big,
            "publish_10k",
            0,
        ),
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
    "* **This table** (2026-12-02): the 200k column is a run at 02:48 UTC on a quiet machine (load",
    "  1.1-1.2, nothing else running). Three more runs of `bench_log 200000` right after it measured a",
    "  stream load of 1.34, 1.17 and 1.05 ms against the anchor's 1.35, 1.34 and 0.94 (the table's run:",
    "  1.28 against 1.28): at parity, met in three runs of four, the fourth 12% slower; columnar appends",
    "  126-151k events/s (1.9-2.2x the anchor's 61-69k), envelopes 78-204k (spread by the disk's",
    "  syncs). Before that, three runs alternating the code before the latest stream-load changes",
    "  (584c5e6^) and after them (f82014f) under the benchmark lock at 02:28-02:30 UTC, at a load of",
    "  4.8-7.1 (others' test suites on both cores): not trustworthy as absolute figures, comparable",
    "  within a run. Stream load against the",
    "  same run's anchor, before: 1.25 ms (0.94), 1.58 (1.28), 1.64 (1.20), 1.23-1.37x the anchor;",
    "  after: 1.08 (1.19), 1.09 (1.37), 0.70 (1.44), 0.49-0.91x. A single run of the new code four",
    "  minutes earlier (load 5.3-5.7) measured 1.90 ms against the anchor's 1.37: at these loads one",
    "  run in four still missed. The appends did not change (columnar 57-123k events/s before, 66-99k",
    "  after, envelopes 85-160k and 99-158k, all within the spread). The 10M column is a run of its",
    "  own with the new code at 02:37-02:40 UTC, load 3.0-4.3 (above 3: not trustworthy either); its",
    "  anchor measured batch appends of 57,180 events/s, commits p50 0.28 ms, a stream load p50 0.85",
    "  ms and replay 115,278 events/s. Its flushing batches (1,440 ms against 804 in the previous",
    "  table's 10M run at load 1.5) include the copy's ~0.1 s of extra CPU, the rest is the load. The",
    "  previous table (2026-12-01, load 1.5-2.9, the code before these changes), 200k then 10M:",
    "  columnar append 154,827 and 150,376 events/s (anchor 71,073), envelopes 151,868 and 163,426, a",
    "  tail commit p50 22.8 and 23.6 ms, a flushing batch 811 and 804 ms, one-event commits p50 0.77",
    "  and 0.77 ms, a stream load 1.67 ms (anchor 0.81) and 1.37 ms, full reads 8.9M and 8.5M events/s.",
    "* **Appends.** A batch under 50,000 events is one write-ahead record (Arrow IPC, `pwritev` +",
    "  `fdatasync`); the tail goes into segments once it holds 200,000 events. Stream versions come from",
    "  the writer's in-memory stream heads, and a batch of fresh time-ordered ids needs no idempotency",
    "  lookup. A 10k-event batch committing to the tail, each step timed alone (CPU, load 3-4): its",
    "  checks ~3.5 ms (one Polars pass when the batch is plainly valid), the stream heads ~1 ms (the",
    "  batch's events per stream, then the cached versions), numbering ~2.1 ms (a lookup of each row's",
    "  base version and a running count per stream; a join took ~2.7), the envelope columns to Arrow",
    "  ~0.9 ms, the record's encoding ~0.9 ms (a 3 MB IPC message and its CRC-32), its write ~1.4 ms",
    "  (copying 3 MB into the page cache) and its `fdatasync` 1.2-2.4 ms on an idle disk, 5-10 ms while",
    "  others write; the tail's bookkeeping and the head ~0.5 ms; the new stream heads come from the",
    "  per-stream counts (a group-by and a list of 10k positions took ~1 ms). That is ~12-14 ms of work;",
    "  the rest of the 22-30 ms a tail commit measures in the benchmark is Polars' steps waiting for the",
    "  second of two shared cores (the process's CPU per tail batch is ~20 ms against ~12-14 ms with",
    "  each step alone) and the sync waiting on a disk others write to (the record's write and sync:",
    "  7-12 ms of wall time for ~3 ms of CPU). The flush pays, per 200k events (CPU, each alone):",
    "  typing the tail's payload columns from their JSON ~165 ms (~220 ms before it stopped copying",
    "  every row through filters when all are of one type), the segment's Parquet write ~130-150 ms",
    "  and its index rows ~80-100 ms (granules: 50k stream and 50k correlation rows), the index",
    "  transaction with DuckDB's checkpoint ~60-90 ms, the Delta commit ~15 ms, unlinking the 60 MB",
    "  write-ahead file ~15 ms, and on a second thread the stream copy ~250-300 ms (the sort on the id's",
    "  hash ~40 ms, the conversion to Arrow ~50 ms, the LZ4 Parquet write of 390 row groups ~140 ms, its",
    "  index rows ~25 ms). A batch that brings its typed columns keeps them in memory with the tail, so",
    "  its flush types only the rows that came as JSON; the batch that fills the tail is now typed like",
    "  the tail (it was stored untyped).",
    "* **Phase by phase, profiled again (2026-12-01, load 4-8: CPU times, not wall).** A tail commit of",
    "  a 10k-event batch costs 21-25 ms of process CPU (user ~15 ms, system ~6.5 ms, ~890 minor page",
    "  faults: its ~3 MB of new columns and record); inside the writer: the checks 7.6 ms, the",
    "  idempotency lookup 0.2 ms (fresh time-ordered ids: none), the stream heads 0.9 ms, numbering",
    "  5.3 ms, the envelope columns to Arrow ~4 ms, the record's framing 2.5 ms (IPC and CRC-32 of",
    "  3 MB), `pwritev` 2.0 ms, `fdatasync` 0.5 ms of CPU (1-10 ms of wall, the disk is shared), the",
    "  tail's bookkeeping 0.5 ms, the head 0.07 ms. The same steps alone on the same batch take",
    "  2-3x less (checks 3.1, numbering 2.4, Arrow 0.7, framing 0.9 ms): in the writer they run on",
    "  fresh memory beside a 200k-event tail, with Polars' threads competing for two busy cores. No",
    "  step is large enough that removing it would reach 1M events/s: that needs a 10k batch in",
    "  10 ms including its share of the flush. The flush of 200k events (1.2-1.5 s of process CPU,",
    "  1.5-4 s of wall at load 5-8) is two thirds of the append time; its steps alone on the same",
    "  200k events (CPU, load 7.6, where a step got a third of a core: wall 2.5-3x its CPU): typing",
    "  the payloads from their JSON 0.25-0.29 s (Polars' `json_decode` itself ~0.11 s), the stream",
    "  copy 0.39-0.40 s (on its own thread beside the typing and the segment), the segment's Parquet",
    "  write with its index rows 0.30 s, the Delta commit with the manifest ~10-25 ms in the writer",
    "  (this workload's segments get no rollup: 0 ms). Checked and already so: one",
    "  `pwritev` and one `fdatasync` per batch (the head is a 16-byte write that is not synced: the",
    "  record is the commit), and the index rows go to DuckDB as Arrow (registered frames, no row",
    "  inserts). Checked and not applicable here: leaving a batch's JSON text to be derived at the",
    "  flush from typed columns it brings. This workload's batches bring JSON only, so there is no",
    "  encoding to skip; for a run's batches (which do bring typed columns) `data` is the published",
    "  table's column that every other engine reads and the identity an idempotent retry is",
    "  compared by, so it must exist by the flush: deriving it there moves the run's encoding",
    "  into the store rather than removing it, and batches of 50k or more go straight to segments.",
    "* **The floor with `fdatasync`'d 10k-event batches on this disk:** the record of a 10k-event batch",
    "  is ~3 MB; writing and syncing it costs 2.6-3.8 ms when the disk is idle (`pwrite` 1.4 ms,",
    "  `fdatasync` p50 2.35 ms, best 1.2 ms) and its CRC 1.1 ms, so the sync alone allows 2-2.5M",
    "  events/s; with the checks, numbering and encoding a tail commit costs ≥ ~12 ms (~800k events/s)",
    "  on a quiet machine, before the flush's 3-5 µs of CPU per event (segment with typed columns,",
    "  stream copy, index rows) that 1M events/s (1 µs per event) cannot absorb: this design's ceiling",
    "  on two cores is ~200-300k events/s for 10k-event batches. 1M events/s needs batches that skip",
    "  the tail and bring their typed columns (the store benchmark's 1M-event batches: 806k events/s).",
    "  Both append targets are missed for that reason.",
    "* **Measured and dropped:** typing each tail batch on a second thread while its record is synced",
    "  (the flush then typed nothing: ~100 ms less per flush, but each tail commit +5 ms, alternating",
    "  under the benchmark's lock at load 3-4: no net gain, the sync is shorter than the typing);",
    "  writing the segment with pyarrow and dictionaries only on low-cardinality columns (the same CPU",
    "  within noise: 267 against 281 ms per 200k run-shaped events); Polars' NDJSON reader for the",
    "  typing (191-207 against 180-197 ms per 200k); finding a copy's index rows from runs of equal",
    "  neighbours instead of a group-by (no faster). Not writing the stream copy at all shortened a",
    "  flush by ~300 ms of wall time at load 3.7 (1,043-1,351 against 752-932 ms, three each): the",
    "  copy already runs on a second thread, so that is its contention for the two cores, the most",
    "  that moving it after the commit could gain; done outside the write lock, a concurrent writer's",
    "  recovery would move a copy still being written to quarantine, so it stays before the commit.",
    "  The index rows cannot follow the commit either: a reader that lists a committed segment's",
    "  granules before they exist would miss its events.",
    "* **Envelope objects** pay one pass of Python over the envelopes (their attributes and the",
    "  canonical JSON of each payload) before the same columnar path. The canonical JSON now reuses one",
    "  C encoder (the same text; 10k small payloads 16-18 ms before, 8-10 ms after), so the pass takes",
    "  ~20 ms per 10k envelopes instead of ~40; 5× the anchor (~21 ms per 10k at its quiet figure) is",
    "  still below what that pass plus the tail commit costs. Timed again in the writer (2026-12-02,",
    "  CPU per 10k envelopes, load ~3-5): the envelope columns 20-28 ms (the canonical JSON 10, the",
    "  attribute passes ~6, extra keys ~2), into Arrow and Polars 5-10 ms (the times 2.4), the checks",
    "  3 ms, the tail commit 17 ms (framing the record 7, the tail's bookkeeping and frame ~8): ~45-60",
    "  ms, 170-220k events/s at best before any flush, where 5× the anchor's 71k needs ≤ 28 ms. The",
    "  canonical JSON and the commit alone are ~27 ms, so no trimming of the rest reaches it.",
    "* **Publish** (the tail into the Delta table: what `settler project` and the Dagster assets pay",
    "  before reading new events) pays per call, whatever the tail's size: the DuckDB index transaction",
    "  and its checkpoint at detach (DuckDB rewrites the last row group of each index table it touched,",
    "  ~20-60 ms), the Delta commit (~15 ms of CPU plus two syncs), the segment's and the copy's writes",
    "  and syncs, and typing the payloads (~25 ms per 10k). Measured and dropped: keeping the Delta",
    "  table open between commits (bringing it up to date cost as much as reading it afresh), and",
    "  leaving DuckDB's checkpoint to a size threshold (every read-only attach then replayed the index's",
    "  write-ahead file: 1.8 ms per index query became ~8 ms). The index schema is applied once per",
    "  process (~3 ms per write before). Publishing 10k events stays ~100-250 ms, above the ~70 ms the",
    "  whole incremental read-model update should take. Timed per step (seven publishes of 10k, load",
    "  3.4, 168 ms each): typing ~22 ms, the segment ~28 ms, the copy ~42 ms beside them, the index",
    "  rows ~22 ms and DuckDB's commit with its checkpoint ~44 ms, the Delta commit ~15 ms. Neither the",
    "  index nor the copy can simply follow the commit (see above); a publish no longer types and",
    "  concatenates an empty batch.",
    "* **Stream loads.** Each segment written from the tail (or by compaction) gets a *stream copy*: the",
    "  same rows grouped by stream in LZ4-compressed row groups without dictionary pages that end where",
    "  a stream ends (at the first stream end past each multiple of 256 rows), named in the index per",
    "  stream. A stream written in 20 commits is then one row-group read of ~300 rows instead of 20. A",
    "  load finds the stream's run in that group by searching the ids' bytes (UUID text of one width),",
    "  slices it out without copying, and builds the envelopes straight from the Arrow columns (one",
    "  JSON parse by pydantic's parser, each distinct time converted once, one metadata instance per",
    "  distinct metadata, the pydantic slots set through their descriptors). Latest changes, CPU per",
    "  step at a load of 4-7 (each alone, medians): the Parquet read without pyarrow's pre-buffering",
    "  ~0.17 ms instead of ~0.28 (its I/O thread hand-off and copy), a ~300-row group instead of 512",
    "  (or two for one load in five) ~0.34 ms of read and slice instead of ~0.42, the run by byte",
    "  search ~0.03 ms instead of ~0.07-0.1 (comparison kernels and scalars read back), the envelopes",
    "  ~0.42 ms instead of ~0.52 (shared metadata, the faster parser); the copy's write pays ~0.1 s",
    "  more CPU per 200k events (2.5x the row groups) on its thread. In one process, alternating a",
    "  fresh reader over the same 300 streams with the anchor (load ~5): 0.65-0.96 ms against the",
    "  anchor's 1.26-1.53 ms. Earlier, on a quiet machine: the row-group read ~0.2 ms, the slice",
    "  ~0.05 ms, the envelopes ~0.25 ms, the view and granule lookups ~0.02 ms. Before those: the",
    "  same read ~0.3 ms, a",
    "  conversion to Polars, a filter and a sort ~0.4 ms, envelopes ~0.8 ms, and ~0.15 ms rebuilding",
    "  the view on every read once a flush had removed the write-ahead file. The writer process and a",
    "  fresh one now measure alike (0.75-0.95 ms and 0.82-0.98 ms at a load of 4-5). What is left is",
    "  mostly Python building 200 model instances. A stream with events in the write-ahead tail gathers",
    "  them by their offsets (kept with the tail's stream map): p50 1.1 ms from a 190k-event tail",
    "  where filtering the whole tail took 4.4 ms. An uncompressed Arrow IPC copy read through a",
    "  memory map (7× the disk) measured the same load time as the Parquet copy, so the format is",
    "  kept. eventsourcing answers from a SQLite B-tree with the stream's rows adjacent and builds no",
    "  objects beyond the decoded JSON. Why the 200k figure swings (1.67 ms against the anchor's 0.81",
    "  in the table above, 1.94 against 0.72 in the previous one, 1.04 against 0.82 in a run at load",
    "  3.6, 0.75-0.9 ms outside the benchmark's process): timed per step inside the",
    "  writer process after the same appends (600 loads, load ~3), a load is ~1.06 ms: the row-group",
    "  read ~0.33, the slice ~0.13, the envelopes ~0.44, the view refresh and granule lookups ~0.1 (two",
    "  checks for a newer table version were ~31 µs each, ~15 µs now: the path is built as text).",
    "  Its CPU time is the same in the writer process and in a fresh one (1.06-1.69 against 1.23-1.36",
    "  ms of thread CPU per load, load ~7): not the process's objects, allocator or garbage collector",
    "  (collecting first or turning `gc` off stayed within the run-to-run spread, 1.32-1.72 ms; a load",
    "  takes no page faults). What moves it is what ran just before: the first pass over 60 streams",
    "  after the appends (or after another process ran)",
    "  took 1.58-1.69 ms of CPU per load and a second pass over the same streams 1.06-1.11 ms (cold",
    "  CPU caches after hundreds of MB of appends), and on two shared cores wall time adds waiting",
    "  for a core. The benchmark loads right after its appends, so it measures the cold pass; at",
    "  comparable load the anchor measures alike (1.17 against 1.23 ms at load 3.8 today).",
    "* **Before and after the latest changes** (the numbering, the stream heads, the canonical JSON,",
    "  the typing fast path, the brought typed columns), `bench_log 200000` alternating the code before",
    "  (de81441) and after under the benchmark lock, load 2.8-3.9, where wall times are not trustworthy",
    "  (the anchor's own batch append measured 31-48k events/s in these runs against 94k at a load of",
    "  1.9): tail commit p50 33.5 and 31.1 ms before, 28.8 and 27.7 ms after; flushing batch 1,905 and",
    "  1,695 ms before, 1,790 and 1,411 after; columnar append 70k and 82k events/s before, 79k and 65k",
    "  after; envelopes 133k and 77k before, 89k and 99k after; publishing 10k 132 and 134 ms before,",
    "  176 and 125 after; stream load 1.1 and 0.9 ms before, 1.9 and 1.0 after. Only the tail commit",
    "  moved beyond the noise. Appends alone (19 batches and 5 envelope batches, four pairs, same lock,",
    "  load 3.1-4.5): columnar 93k-149k before, 135k-153k after; envelopes 113k-151k before, 133k-188k",
    "  after. At 10M events, two pairs (before at load 3.0 and 1.8, after at 3.2 and 2.3): columnar",
    "  126k and 156k events/s before, 116k and 162k after; tail commit p50 26.2 and 24.0 ms before,",
    "  24.2 and 21.8 after; flushing batch p50 819 and 760 ms before, 1,082 and 759 after (the flush's",
    "  own CPU, alternating three pairs at 200k, is the same: 976-1,312 ms before, 994-1,233 after,",
    "  the typing the fast path saves now spent typing the batch that fills the tail); envelopes 102k",
    "  and 138k before, 130k and 151k after; publishing 10k 164 and 114 ms before, 157 and 88 after.",
    "  Timed alone the changed steps are cheaper (CPU): envelope columns 40 -> 20 ms per 10k,",
    "  numbering 2.7 -> 2.1 ms, typing a 200k tail 219 -> 165 ms; the rest is unchanged.",
    "* **Full reads** scan the position-ordered segments only (stream copies are never read for them);",
    "  on two shared cores they are the figure that moves most with the load average above: the day's",
    "  runs read 10M events at 3.2-9.4M events/s (the slowest at a load of 4.6; 9.4M at 1.7 in the",
    "  previous table), 200k at 5.8-11M events/s; a run of this code at a load of 3.2 read 10M at 3.8M",
    "  events/s, under 30× the anchor's replay, where the table's run (load 1.5) read 8.5M.",
    "* **One-event commits** are the write-ahead append and `fdatasync` plus exact lookups (a",
    "  name-based id is looked up in an in-memory map, never by scanning); the sync dominates and",
    "  depends on the disk's contention at the time. Before the durability work (framed records, the",
    "  recorded head) a small commit measured p50 0.45 ms at 10M on a quiet machine; it now adds a",
    "  16-byte `pwrite` of the head (no second sync), compare the row above.",
]
