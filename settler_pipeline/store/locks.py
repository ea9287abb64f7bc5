"""Inter-process locks on files (POSIX ``flock``): shared for readers, exclusive for writers.

DuckDB refuses a second process at once ("Could not set lock on file"); holding our own OS lock around
every attach makes processes wait their turn instead of failing. Locks are held only for the duration of
one operation, so an idle reader or writer never blocks anyone.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from settler_pipeline.errors import LockTimeoutError

DEFAULT_TIMEOUT_S = 120.0


@contextmanager
def file_lock(
    path: Path, *, shared: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S, create: bool = True
) -> Iterator[None]:
    """Hold an exclusive (or, with ``shared``, a shared) lock on ``path`` for the ``with`` block.

    Waits up to ``timeout_s`` and then raises :class:`LockTimeoutError`. The lock dies with the process,
    so a writer killed while holding it never leaves the store locked. With ``create=False`` the lock
    file is opened read-only (a shared ``flock`` needs no write access) and a missing one means no
    writer has ever run, so there is nothing to wait for."""
    if not create:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield
            return
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"timed out after {timeout_s:.0f}s waiting for {path.name}",
                        hint="another settler process holds the store; retry when it finishes",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
