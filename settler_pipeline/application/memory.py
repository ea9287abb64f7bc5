"""The memory a run is expected to need and the memory it may use, compared before it reads anything
and again once it knows its largest block.

A run holds one side's input as text while it normalises it (in slices, spilled to disk; both sides
at once when they are small, see :func:`read_together`), then one
block of records at a time with the matcher's working frames and that block's events (see
:mod:`settler_pipeline.domain.matching.blocks`), so its peak grows with the larger side's bytes and
with its largest block, not with its whole input. A process killed for memory (the
kernel's OOM killer, or an allocation refused under an address-space limit, which aborts the native
code) cannot record why it stopped, and the run would stay ``running`` until its lease expires. So the
attempt estimates its peak first (and again when its blocks are planned) and, when that exceeds
the smallest limit in force, fails at once
with an :class:`~settler_pipeline.errors.InsufficientMemoryError` saying how much it needs: recorded
in the run's ``ReconciliationFailed`` event, readable in ``settler status`` and the journal.

Limits considered: the ``max_memory`` setting (resident memory of the process), the address-space
limit of the process (``ulimit -v``, ``RLIMIT_AS``) and the memory limit of its cgroup
(``memory.max``, what a container's memory limit sets).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

from settler_pipeline.errors import InsufficientMemoryError

# Peak resident memory a whole run adds per byte of input read, measured on the sample job (CSV with
# every hard case, docs/benchmarks.md): 14 at 1M x 1M records, 11.4 at 5M x 4.6M. Parquet is
# compressed on disk, each of its bytes becoming several bytes of text (assumed 4); a query's result
# size is unknown before it runs (no estimate).
PEAK_PER_INPUT_BYTE: dict[str, float] = {"csv": 14.0, "jsonl": 14.0, "parquet": 56.0}
# Peak while one side is read and normalised slice by slice: its text as read plus one slice's work.
LOAD_PER_INPUT_BYTE: dict[str, float] = {"csv": 4.0, "jsonl": 6.0, "parquet": 16.0}
READ_TOGETHER_BYTES = 256 * 1024**2
"""Most input bytes (both sides) read at the same time: 1M x 1M records of the sample job are ~200 MB;
above this a side is read alone, as the peak of a large run is bounded by one side's read."""
# Peak per record of a block (both sides): records, the matcher's frames and the block's events.
BLOCK_BYTES_PER_RECORD = 1400
# Address space a run maps per byte of resident memory it adds (allocator arenas and the native
# thread pools reserve more than they touch): 2.3 measured on the same run, with a margin.
ADDRESS_SPACE_PER_RESIDENT_BYTE = 2.5
_GIB = 1024**3
_CGROUP = Path("/sys/fs/cgroup")
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemoryLimit:
    """The most memory a run may add to what the process already uses, and what sets it."""

    headroom_bytes: int
    source: str
    fix: str


Inputs = list[tuple[str, int | None]]
"""What a run reads: (adapter kind, bytes on disk or None when unknown) per side."""


def estimated_peak_bytes(inputs: Inputs, block_records: int | None = None) -> int | None:
    """The resident memory a run reading ``inputs`` is expected to add at its peak; None when any
    input's size is unknown. Matching needs what the whole input needs at most and, with
    ``block_records``, about what a block of that many records needs; reading needs what its larger
    side needs."""
    total = 0.0
    load = 0.0
    for adapter, size in inputs:
        if size is None or adapter not in PEAK_PER_INPUT_BYTE:
            return None
        total += size * PEAK_PER_INPUT_BYTE[adapter]
        load = max(load, size * LOAD_PER_INPUT_BYTE[adapter])
    if block_records is not None:
        total = min(total, block_records * BLOCK_BYTES_PER_RECORD)
    return int(max(total, load))


def read_together(inputs: Inputs, block_records: int | None = None) -> bool:
    """Whether both sides may be read at the same time: both sizes are known, together at most
    :data:`READ_TOGETHER_BYTES`, and holding both as read does not raise the run's estimated peak
    (:func:`estimated_peak_bytes`, which counts one side at a time while reading)."""
    peak = estimated_peak_bytes(inputs, block_records)
    if peak is None:  # a size is unknown
        return False
    known = [(adapter, size or 0) for adapter, size in inputs]
    load = sum(size * LOAD_PER_INPUT_BYTE[adapter] for adapter, size in known)
    return sum(size for _adapter, size in known) <= READ_TOGETHER_BYTES and load <= peak


def current_limit(max_memory: int | None) -> MemoryLimit | None:
    """The tightest memory limit in force for this process (None when there is none): the
    ``max_memory`` setting, the address-space limit and the cgroup's ``memory.max``, each as the
    headroom left above what the process uses now."""
    limits: list[MemoryLimit] = []
    status = _proc_status()
    if max_memory is not None:
        limits.append(
            MemoryLimit(
                max_memory - status.get("VmRSS", 0),
                f"the max_memory setting ({_gib(max_memory)})",
                "raise the max_memory setting (SETTLER_MAX_MEMORY)",
            )
        )
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        mapped = status.get("VmSize", 0)
        limits.append(
            MemoryLimit(
                int((soft - mapped) / ADDRESS_SPACE_PER_RESIDENT_BYTE),
                f"the process's address-space limit (ulimit -v, {_gib(soft)})",
                "raise the address-space limit (ulimit -v)",
            )
        )
    cgroup = cgroup_headroom()
    if cgroup is not None:
        limits.append(
            MemoryLimit(cgroup, "the memory limit of the process's cgroup", "give the container more memory")
        )
    return min(limits, key=lambda limit: limit.headroom_bytes) if limits else None


def check_memory(inputs: Inputs, max_memory: int | None, *, block_records: int | None = None) -> None:
    """Raise :class:`InsufficientMemoryError` when the run reading ``inputs`` (matched in blocks of
    ``block_records``) is expected to need more memory than :func:`current_limit` leaves; the message
    says how much it needs and what limits it, the hint how to fix it. Does nothing when the need or
    the limit is unknown."""
    need = estimated_peak_bytes(inputs, block_records)
    limit = current_limit(max_memory)
    if need is None or limit is None or need <= limit.headroom_bytes:
        return
    read = sum(size or 0 for _adapter, size in inputs)
    raise InsufficientMemoryError(
        f"the run needs about {_gib(need)} of memory to reconcile {_gib(read)} of input, but "
        f"{limit.source} leaves {_gib(max(limit.headroom_bytes, 0))}",
        hint=f"{limit.fix}, or reconcile fewer days per run so each run reads smaller inputs",
    )


def check_block_memory(records: int, max_memory: int | None) -> None:
    """Raise :class:`InsufficientMemoryError` when a run's largest block, ``records`` records of one
    currency over a run of days, is expected to need more memory than :func:`current_limit` leaves."""
    need = records * BLOCK_BYTES_PER_RECORD
    limit = current_limit(max_memory)
    if limit is None or need <= limit.headroom_bytes:
        return
    raise InsufficientMemoryError(
        f"the run needs about {_gib(need)} of memory to match its largest block ({records:,} records "
        f"of one currency over the days its passes' windows span), but {limit.source} leaves "
        f"{_gib(max(limit.headroom_bytes, 0))}",
        hint=f"{limit.fix}, or reconcile fewer days per run",
    )


def _gib(size: float) -> str:
    if size < _GIB:
        return f"{size / 1024**2:.0f} MiB"
    return f"{size / _GIB:.2f} GiB"


def _proc_status() -> dict[str, int]:
    """``VmRSS`` and ``VmSize`` of this process in bytes (empty where /proc is not there)."""
    out: dict[str, int] = {}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmSize") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def cgroup_headroom(root: Path = _CGROUP, membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """What this process's cgroup still lets it use (limit minus usage), or None without a limit.
    Reads cgroup v2 (``memory.max``, ``memory.current``) or, on hosts that still mount v1, the memory
    controller's ``memory.limit_in_bytes`` and ``memory.usage_in_bytes``."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, relative = parts
        if controllers == "":
            found = _headroom(root / relative.lstrip("/"), "memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            found = _headroom(
                root / "memory" / relative.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes"
            )
            if found is None:
                # Inside a container the v1 hierarchy is often mounted at the group itself.
                found = _headroom(root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        if found is not None:
            return found
    return None


def _headroom(folder: Path, limit_file: str, usage_file: str) -> int | None:
    try:
        limit = (folder / limit_file).read_text().strip()
        used = int((folder / usage_file).read_text().strip())
    except (OSError, ValueError):
        return None
    # v2 says "max"; v1 says a number near 2**63 rounded down to the page size
    if limit == "max" or not limit.isdigit() or int(limit) >= _V1_UNLIMITED:
        return None
    return int(limit) - used
