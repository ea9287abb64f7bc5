"""Runs ``settler`` (the real CLI, in this process) with a target side that stalls once it is being
read: prints ``FETCHING`` and sleeps, so the test can kill or signal the process in the middle of a run.
With ``STALL_AT=results`` it stalls instead once the first results are in the log (prints ``RECORDED``).
With ``STALL_UNTIL=PATH`` a stall ends, and the run goes on, once that file exists.
Usage: stalled_run.py SETTLER_ARGS..."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from settler_pipeline.application import attempt
from settler_pipeline.cli.main import main

real_spill_side = attempt.spill_side
real_append = attempt.AttemptRunner.append


def stall() -> None:
    until = os.environ.get("STALL_UNTIL")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (until and os.path.exists(until)):
        time.sleep(0.05)


def stalling_spill_side(*args: Any, **kwargs: Any) -> Any:
    if kwargs.get("side") == "target":
        print("FETCHING", flush=True)
        stall()
    return real_spill_side(*args, **kwargs)


def stalling_append(self: attempt.AttemptRunner, *args: Any, **kwargs: Any) -> Any:
    state, count = real_append(self, *args, **kwargs)
    if state.counts.matched:
        print("RECORDED", flush=True)
        stall()
    return state, count


if os.environ.get("STALL_AT") == "results":
    attempt.AttemptRunner.append = stalling_append  # type: ignore[method-assign]
else:
    attempt.spill_side = stalling_spill_side  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv = ["settler", *sys.argv[1:]]
    main()
