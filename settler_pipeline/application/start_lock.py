"""Start locks: one start of a job's runs at a time, so "each job, tenant and day counts once" holds
when two processes start the same days at the same moment.

The rule is checked by reading the log (the live runs whose days overlap) and then appending the new
run's start. Between the read and the append another process can start the same days: both would see
no live run and both would count the days. The start of a run of ``job_id`` in ``tenant_id`` therefore
holds ``<data dir>/locks/start-<hash>.lock`` (an exclusive ``flock``) from the check until its start
event is appended; a second start of the same job waits, then sees the first run and is refused (or
supersedes it). Starts of other jobs or tenants never wait for each other. The kernel releases the lock
of a process that dies, so a killed start never blocks the next one.

Review decisions (``ReconciliationService._simple``) and a run's completion, which takes over the
decisions on items it shares with other runs (``shared_items.py``), hold the same lock, briefly: a
decision is then either seen by the other run's completion or sees that run completed, never neither.

The lock covers the processes of one host (like the store's write lock, which already assumes that a
data directory is written from one host).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from settler_pipeline.errors import StateError

_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class StartLocks:
    """Start locks of one data directory (``directory`` is ``<data dir>/locks``)."""

    directory: Path
    wait_seconds: float = 120.0

    def path(self, tenant_id: str, job_id: str) -> Path:
        """The lock file of a job: named by a hash, so no id ever reaches a file name."""
        digest = hashlib.sha256(f"{tenant_id}\0{job_id}".encode()).hexdigest()[:32]
        return self.directory / f"start-{digest}.lock"

    @contextlib.contextmanager
    def hold(self, tenant_id: str, job_id: str) -> Iterator[None]:
        """Hold the job's start lock for the ``with`` block, waiting up to ``wait_seconds`` for another
        start of the same job to be recorded; raise :class:`StateError` if it is not by then."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path(tenant_id, job_id), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.wait_seconds
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StateError(
                            f"another start of job {job_id!r} in tenant {tenant_id!r} has been in "
                            f"progress for over {self.wait_seconds:.0f} s",
                            hint="try again when it has been recorded (`settler runs` lists the runs)",
                        ) from None
                    time.sleep(_POLL_SECONDS)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
