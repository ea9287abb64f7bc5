"""Matcher benchmark: generated processor vs bank data with hard cases, matched with every pass.

For each size, a fresh subprocess generates ``size`` source rows (and the ~0.9 x size bank lines that
settle them) with :func:`settler_pipeline.sample.generate_sample`, then times
:func:`settler_pipeline.domain.matching.match_records` with
:func:`settler_pipeline.sample.sample_match_config` three times and reports the median. Running each
size in its own process keeps each peak RSS (``ru_maxrss``, generation included) its own.

Sizes whose estimated memory would not fit in the memory available are reported as skipped rather
than risking the machine.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import psutil  # type: ignore[import-untyped]

from benchmarks.isolation import measure_in_subprocess
from settler_pipeline.domain.matching import MatchResult, match_records
from settler_pipeline.sample import SampleData, generate_sample, sample_match_config
from settler_pipeline.store.name_digests import sha1_digests

REPEATS = 3
# Peak RSS per source row measured at 1M rows (generation + matching), with headroom.
BYTES_PER_ROW_ESTIMATE = 3_200
ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _RssSampler:
    """The highest RSS seen while running (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _quality(sample: SampleData, result: MatchResult) -> dict[str, Any]:
    def key(frame: pl.DataFrame) -> pl.DataFrame:
        def joined(column: str) -> pl.Expr:
            return pl.col(column).list.sort().cast(pl.List(pl.String)).list.join(",")

        return frame.with_columns(
            link=pl.concat_str([joined("source_lines"), pl.lit("|"), joined("target_lines")])
        )

    truth = key(sample.truth)
    confirmed = key(result.matches.filter(pl.col("status") == "matched"))
    found = key(result.matches)
    truth = truth.with_columns(
        found=pl.col("link").is_in(found["link"].implode()),
        confirmed=pl.col("link").is_in(confirmed["link"].implode()),
    )
    by_phenomenon = (
        pl.concat(
            [
                truth.select("phenomenon", "found", "confirmed"),
                truth.filter("common_amount").select(
                    pl.lit("common_amount").alias("phenomenon"), "found", "confirmed"
                ),
            ]
        )
        .group_by("phenomenon")
        .agg(
            links=pl.len(),
            recall=pl.col("found").mean().round(4),
            auto_matched=pl.col("confirmed").mean().round(4),
        )
        .sort("phenomenon")
    )
    used = [result.matches[c].explode() for c in ("source_lines", "target_lines")]
    decoys = sample.decoys["target_line"].implode()
    return {
        "precision_matched": round(
            confirmed.join(truth, on="link", how="semi").height / max(confirmed.height, 1), 6
        ),
        "recall_matched_or_proposed": round(float(truth["found"].mean() or 0.0), 6),
        "records_used_twice": sum(s.len() - s.n_unique() for s in used),
        "decoys_auto_matched": int(confirmed["target_lines"].explode().is_in(decoys).sum()),
        "by_phenomenon": by_phenomenon.to_dicts(),
    }


def measure(size: int, *, repeats: int = REPEATS, seed: int = 20261101) -> dict[str, Any]:
    """Generate one sample of ``size`` source rows and time ``match_records`` on it (in this process)."""
    started = time.perf_counter()
    sample = generate_sample(size, seed=seed, start=date(2026, 11, 1), days=30)
    generate_s = time.perf_counter() - started
    rss_before = psutil.Process().memory_info().rss
    config = sample_match_config()
    timings: list[float] = []
    result: MatchResult | None = None
    with _RssSampler() as sampler:
        for attempt in range(repeats):
            started = time.perf_counter()
            result = match_records(
                sample.source, sample.target, config, run_id=f"bench-{attempt}", digests=sha1_digests
            )
            timings.append(time.perf_counter() - started)
            if attempt < repeats - 1:
                del result
                result = None
    assert result is not None
    return {
        "size": size,
        "source_records": sample.source.height,
        "target_records": sample.target.height,
        "wall_s": round(statistics.median(timings), 3),
        "runs_s": [round(t, 3) for t in timings],
        "repeats": repeats,
        "generate_s": round(generate_s, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_match_mb": round(rss_before / 2**20, 1),
        "match_peak_rss_mb": round(sampler.peak / 2**20, 1),
        "matches": result.matches.height,
        "accounting": result.accounting(),
        **_quality(sample, result),
    }


def run(sizes: tuple[int, ...] = (200_000, 1_000_000)) -> list[dict[str, Any]]:
    """One result dict per size (see :func:`measure`), each measured in a fresh subprocess; a size
    that would not fit in memory, or whose subprocess fails, yields ``{"size", "skipped"}``."""
    results: list[dict[str, Any]] = []
    for size in sizes:
        needed = size * BYTES_PER_ROW_ESTIMATE
        available = psutil.virtual_memory().available
        if needed > 0.8 * available:
            results.append(
                {
                    "size": size,
                    "skipped": f"needs about {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available",
                }
            )
            continue
        results.append(measure_in_subprocess("benchmarks.bench_matcher", size))
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--single":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        chosen = tuple(int(s) for s in sys.argv[1:]) or (200_000, 1_000_000)
        print(json.dumps(run(chosen), indent=2))
