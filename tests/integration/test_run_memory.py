"""A run that would need more memory than it may use fails at its start, on the record, with a message
saying how much it needs and how to fix it; it never dies half-way with the run left ``running``.

Both limits are real: the ``max_memory`` setting of a real ``settler`` process, and an address-space
limit (``RLIMIT_AS``, what ``ulimit -v`` sets) on a real child process."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from settler_pipeline.application.memory import (
    ADDRESS_SPACE_PER_RESIDENT_BYTE,
    BLOCK_BYTES_PER_RECORD,
    LOAD_PER_INPUT_BYTE,
    PEAK_PER_INPUT_BYTE,
    cgroup_headroom,
    check_block_memory,
    check_memory,
    current_limit,
    estimated_peak_bytes,
)
from settler_pipeline.errors import InsufficientMemoryError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 3)


def _setup(tmp_path: Path, records: int) -> tuple[Path, Path]:
    spec, _ = write_sample_job(tmp_path / "inputs", records=records, start=DAY, days=2, seed=11)
    data = tmp_path / "data"
    with Settler(data) as app:
        app.access.create_tenant("acme", admin=app.user)
    return spec, data


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    return {**env, "SETTLER_DATA_DIR": str(data), "PYTHONPATH": str(ROOT), **extra}


def _failed_run(data: Path) -> dict[str, object]:
    with Settler(data) as app:
        started = app.events(event_types=["ReconciliationStarted"])
        (run_id,) = started["aggregate_id"].unique().to_list()
        state = app.state(run_id)
        failed = app.events(event_types=["ReconciliationFailed"])
    assert state.status == "failed", state.status
    assert failed.height == 1
    assert state.last_error is not None
    return dict(state.last_error)


def test_the_estimate_grows_with_the_input_and_is_unknown_for_a_query() -> None:
    assert estimated_peak_bytes([("csv", 100), ("csv", 100)]) == int(200 * PEAK_PER_INPUT_BYTE["csv"])
    assert estimated_peak_bytes([("parquet", 100), ("csv", 0)]) == int(100 * PEAK_PER_INPUT_BYTE["parquet"])
    assert estimated_peak_bytes([("csv", 100), ("duckdb_sql", None)]) is None
    # an unknown need or no limit at all never refuses a run
    check_memory([("duckdb_sql", None)], max_memory=1)


def test_blocks_bound_the_estimate_by_the_larger_side_and_the_largest_block() -> None:
    gib = 1024**3
    inputs = [("csv", 4 * gib), ("csv", 2 * gib)]
    whole = estimated_peak_bytes(inputs)
    cut = estimated_peak_bytes(inputs, block_records=1_000)
    assert whole == int(6 * gib * PEAK_PER_INPUT_BYTE["csv"])
    # tiny blocks: reading the larger side is what needs the most
    assert cut == int(4 * gib * LOAD_PER_INPUT_BYTE["csv"])
    assert estimated_peak_bytes(inputs, block_records=2 * 10**7) == 2 * 10**7 * BLOCK_BYTES_PER_RECORD
    assert estimated_peak_bytes([("csv", 100)], block_records=10**9) == int(100 * PEAK_PER_INPUT_BYTE["csv"])
    check_block_memory(10**6, max_memory=None)
    with pytest.raises(InsufficientMemoryError, match=r"largest block \(1,000,000 records") as caught:
        check_block_memory(10**6, max_memory=1)
    assert caught.value.hint and "fewer days" in caught.value.hint


def test_the_max_memory_setting_is_the_limit_when_it_is_tightest() -> None:
    limit = current_limit(max_memory=1)
    assert limit is not None and limit.headroom_bytes < 0 and "max_memory" in limit.source
    with pytest.raises(InsufficientMemoryError, match=r"needs about .* of memory") as caught:
        check_memory([("csv", 10 * 1024**2)], max_memory=1)
    assert "max_memory" in str(caught.value) and caught.value.hint and "fewer days" in caught.value.hint


def test_a_run_over_the_max_memory_setting_fails_on_the_record(tmp_path: Path) -> None:
    spec, data = _setup(tmp_path, records=300)
    result = subprocess.run(
        [sys.executable, "-m", "settler_pipeline.cli", "reconcile", str(spec), "--from", DAY.isoformat()],
        capture_output=True,
        text=True,
        env=_env(data, SETTLER_MAX_MEMORY="1MiB"),
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    assert "InsufficientMemoryError" in output and "Traceback" not in output
    error = _failed_run(data)
    assert error["step"] == "check_memory"
    assert "needs about" in str(error["message"]) and "max_memory setting" in str(error["message"])
    assert "SETTLER_MAX_MEMORY" in str(error["message"])


def test_a_run_under_an_address_space_limit_below_its_estimate_fails_on_the_record(tmp_path: Path) -> None:
    """The child runs under ``RLIMIT_AS`` from its start (as under ``ulimit -v``): room to start and
    open the log, but less than the run is estimated to need on top."""
    spec, data = _setup(tmp_path, records=400_000)
    inputs = sum(p.stat().st_size for p in spec.parent.glob("*.csv"))
    need = estimated_peak_bytes([("csv", inputs)])
    assert need is not None and need > 900 * 1024**2
    # What the process maps when it runs (interpreter, libraries, native thread pools, the open log),
    # measured as the peak of the same command reconciling a tiny job, plus half of what the run is
    # estimated to need: less than it needs, and room enough to record the failure and report it.
    tiny_spec, tiny_data = _setup(tmp_path / "tiny", records=300)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys\n"
            "sys.argv = ['settler', 'reconcile', sys.argv[1], '--from', sys.argv[2]]\n"
            "try:\n"
            "    runpy.run_module('settler_pipeline.cli', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')][0])",
            str(tiny_spec),
            DAY.isoformat(),
        ],
        capture_output=True,
        text=True,
        env=_env(tiny_data),
        timeout=300,
        cwd=ROOT,
        check=True,
    )
    limit = int(probe.stdout.split()[-1]) * 1024 + int(need * ADDRESS_SPACE_PER_RESIDENT_BYTE * 0.5)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "settler_pipeline.cli", "reconcile", str(spec), "--from", DAY.isoformat()],
        capture_output=True,
        text=True,
        env=_env(data),
        timeout=300,
        cwd=ROOT,
        preexec_fn=limited,  # only setrlimit between fork and exec: nothing that could deadlock
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    error = _failed_run(data)
    assert error["step"] == "check_memory"
    assert "address-space limit" in str(error["message"]) and "ulimit -v" in str(error["message"])


def _cgroup(tmp_path: Path, membership: str, files: dict[str, str]) -> int | None:
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return cgroup_headroom(root, proc)


def test_the_cgroup_limit_is_read_from_cgroup_v2_and_v1(tmp_path: Path) -> None:
    gib = 1 << 30
    v2 = {"app/memory.max": str(6 * gib), "app/memory.current": str(gib)}
    assert _cgroup(tmp_path / "a", "0::/app\n", v2) == 5 * gib
    unlimited_v2 = {"app/memory.max": "max", "app/memory.current": str(gib)}
    assert _cgroup(tmp_path / "b", "0::/app\n", unlimited_v2) is None
    v1 = {"memory/box/memory.limit_in_bytes": str(4 * gib), "memory/box/memory.usage_in_bytes": str(gib)}
    membership = "9:name=systemd:/\n4:memory:/box\n1:cpu,cpuacct:/\n0::/\n"
    assert _cgroup(tmp_path / "c", membership, v1) == 3 * gib
    # A container sees its own group at the hierarchy's root, not under the host's path.
    at_root = {"memory/memory.limit_in_bytes": str(2 * gib), "memory/memory.usage_in_bytes": str(gib)}
    assert _cgroup(tmp_path / "d", membership, at_root) == gib
    unlimited_v1 = {
        "memory/memory.limit_in_bytes": "9223372036854771712",
        "memory/memory.usage_in_bytes": str(gib),
    }
    assert _cgroup(tmp_path / "e", membership, unlimited_v1) is None
    assert _cgroup(tmp_path / "f", "garbage\n", {}) is None
