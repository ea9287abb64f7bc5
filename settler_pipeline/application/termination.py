"""Termination signals while a run executes: turned into an exception, so the run records how it ended."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def termination_raises() -> Iterator[None]:
    """While a run executes, turn SIGTERM and SIGHUP into :class:`SystemExit` (as Ctrl-C already is a
    KeyboardInterrupt) so the attempt records its failure before the process ends. Only in the main
    thread, and only where nobody (such as Dagster) installed a handler of their own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
