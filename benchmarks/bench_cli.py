"""Start-up of the `settler` command: the median wall time of fresh processes running `settler --help`
and the help of a subcommand (target <= 0.3 s), beside a bare Python start and the import of the
command line alone, so the figure can be read against what no command can avoid."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTLER = Path(sys.executable).parent / "settler"


def _median_seconds(argv: list[str], repeats: int) -> dict[str, float]:
    times, cpu = [], []
    subprocess.run(argv, capture_output=True, check=True)  # warm the file cache once
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU time is what the process itself costs; wall time also holds waiting on a busy machine
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    times.sort()
    return {
        "median_s": round(statistics.median(times), 4),
        "p90_s": round(times[int(0.9 * (len(times) - 1))], 4),
        "min_s": round(times[0], 4),
        "cpu_median_s": round(statistics.median(cpu), 4),
    }


def run(repeats: int = 21) -> dict[str, Any]:
    """Median start-up times over ``repeats`` fresh processes each, with the machine's load average
    (1 minute) before and after: wall times on a loaded machine mostly measure the wait for a core."""
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {
        "repeats": repeats,
        "python_bare": _median_seconds([sys.executable, "-c", "pass"], repeats),
        "import_cli": _median_seconds([sys.executable, "-c", "import settler_pipeline.cli.main"], repeats),
        "settler_help": _median_seconds([str(SETTLER), "--help"], repeats),
        "settler_review_help": _median_seconds([str(SETTLER), "review", "list", "--help"], repeats),
    }
    results["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return results


if __name__ == "__main__":
    print(run())
