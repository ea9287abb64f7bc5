"""Run leases: how a run whose process died is told apart from a run still executing.

The process executing a run holds ``<data dir>/leases/<run id>.lease``: an exclusive ``flock`` for as
long as it lives, and a heartbeat that renews the file's modification time every third of the lease
period. Another process judges the lease:

* no file: nobody ever executed the run here (a queued run, or one from before leases existed);
* the lock can be taken: the holder is gone (killed, crashed, out of memory): the kernel released it;
* the lock is held but the heartbeat is older than the lease period: the holder is wedged, or runs on
  another host whose lock this host cannot see; treated as gone as well.

A finished run's lease file is removed, unless the executing block ended by an exception: then the
run may not have recorded how it ended (a full disk refused the failure event too), so the file is
left behind, unlocked, and the next command reads the lease as expired and marks the run abandoned
instead of waiting forever for a process that is gone. Judging a lease never blocks the holder for
longer than a non-blocking ``flock`` call.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from settler_pipeline.errors import StateError
from settler_pipeline.ids import validate_uuid


class LeaseState(StrEnum):
    NONE = "none"  # no executor ever held it
    ALIVE = "alive"
    EXPIRED = "expired"  # the executor died or stopped renewing


@dataclass(frozen=True)
class RunLeases:
    """Leases of runs in one data directory (``directory`` is ``<data dir>/leases``)."""

    directory: Path
    seconds: float = 120.0

    def path(self, run_id: str) -> Path:
        return self.directory / f"{validate_uuid('reconciliation_id', run_id)}.lease"

    @contextlib.contextmanager
    def hold(self, run_id: str) -> Iterator[None]:
        """Hold the run's lease for the ``with`` block (heartbeat included); raise :class:`StateError`
        when a live process already holds it. A block left by an exception leaves the lease expired
        (see the module docstring)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(run_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(
                    f"reconciliation {run_id} is being executed by another process",
                    hint="wait for it to finish, or cancel it",
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            stop = threading.Event()
            beat = threading.Thread(target=self._beat, args=(path, stop), name=f"lease-{run_id}", daemon=True)
            beat.start()
            ended = False
            try:
                yield
                ended = True
            finally:
                stop.set()
                beat.join()
                if ended:
                    path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _beat(self, path: Path, stop: threading.Event) -> None:
        while not stop.wait(self.seconds / 3):
            with contextlib.suppress(OSError):
                os.utime(path)

    def state(self, run_id: str) -> LeaseState:
        """Whether the run's executor is alive, gone, or never was (see the module docstring)."""
        path = self.path(run_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return LeaseState.NONE
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                age = time.time() - os.fstat(fd).st_mtime
                return LeaseState.EXPIRED if age > self.seconds else LeaseState.ALIVE
            if os.fstat(fd).st_size == 0 and time.time() - os.fstat(fd).st_mtime < self.seconds:
                # created but not yet locked by its holder: a start in progress, not a death
                return LeaseState.ALIVE
            return LeaseState.EXPIRED
        finally:
            os.close(fd)

    def clear(self, run_id: str) -> None:
        """Forget an expired lease (after the run was marked abandoned)."""
        self.path(run_id).unlink(missing_ok=True)
