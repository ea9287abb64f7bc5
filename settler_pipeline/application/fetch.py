"""Fetch: both sides of a run read, one after the other or, when both are small, at the same time.

Reading and normalising a side is mostly Polars work, which runs outside the interpreter's lock and
much of it on one core at a time: reading the source on a second thread while this thread reads the
target keeps both cores busy. Both sides' text is then held at once, so only inputs small enough
that this does not raise the run's estimated peak are read together (see
:func:`~settler_pipeline.application.memory.read_together`).

Reading together behaves as reading in order: the source's error is raised before the target's, with
the step saying which side failed. A signal ends the fetch once the source's read has ended too, or
after :data:`GRACE_SECONDS`: the source's thread is a daemon, so the process never waits for a read
that may never end (a stalled mount).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

from settler_pipeline.adapters.spill import SpilledSide
from settler_pipeline.jobspec import JobSpec, SideSpec

T = TypeVar("T")
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
GRACE_SECONDS = 10.0
"""Longest a fetch ended by a signal waits for the source's read to end before it lets the signal
through (reading a side small enough to be read together takes a few seconds)."""


class Progress(Protocol):
    """Where an attempt is: ``step`` names what it is doing, for the record of a failure."""

    step: str


def fetch_sides(
    spec: JobSpec,
    read: Callable[[str, SideSpec], SpilledSide],
    *,
    together: bool,
    progress: Progress,
    report: Callable[[str, int], None],
) -> dict[str, SpilledSide]:
    """Both sides of ``spec`` as ``read`` reads them (``read(side, side_spec)``), ``together`` or in
    order; ``progress.step`` is ``fetch_<side>`` while a side is awaited and ``report`` is told of each
    side as its read starts. An exception is the source's when both sides raise, as in order."""
    sides = (("source", spec.source), ("target", spec.target))
    if not together:
        spilled: dict[str, SpilledSide] = {}
        for index, (side, side_spec) in enumerate(sides):
            progress.step = f"fetch_{side}"
            report(f"reading the {side} ({side_spec.adapter})", index)
            spilled[side] = read(side, side_spec)
        return spilled
    progress.step = "fetch_source"
    report(f"reading the source ({spec.source.adapter})", 0)
    source = _OnThread(lambda: read("source", spec.source), name="settler-read-source")
    try:
        progress.step = "fetch_target"
        report(f"reading the target ({spec.target.adapter})", 1)
        try:
            target = read("target", spec.target)
        except Exception:
            progress.step = "fetch_source"
            source.result()  # the source's error comes first, as when the sides are read in order
            progress.step = "fetch_target"
            raise
        progress.step = "fetch_source"
        spilled = {"source": source.result(), "target": target}
    except BaseException:
        # A signal ends the fetch. Polars cancels a call running when Ctrl-C comes, but until every
        # running call has ended it cancels each new one too: the attempt could not record its
        # failure while the source's read goes on. The grace bounds the wait for a read that hangs.
        source.wait(GRACE_SECONDS)
        raise
    progress.step = "fetch_target"  # where reading in order ends
    return spilled


class _OnThread(Generic[T]):
    """``call`` run on a daemon thread; :meth:`result` waits for it and returns or raises its outcome."""

    def __init__(self, call: Callable[[], T], *, name: str) -> None:
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

        def run() -> None:
            # The signals the main thread turns into exceptions must reach it, not this thread: the
            # main thread could sleep on through one this thread received.
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
            try:
                self._value = call()
            except BaseException as exc:  # handed to the waiting thread, never printed here
                self._error = exc
            finally:
                self._done.set()

        threading.Thread(target=run, name=name, daemon=True).start()

    def wait(self, seconds: float) -> None:
        """Wait for the call to end, at most ``seconds``."""
        self._done.wait(seconds)

    def result(self) -> T:
        """The call's value, or its exception raised here (waiting until it ends)."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)
