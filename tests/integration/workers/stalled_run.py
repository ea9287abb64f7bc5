"""Runs ``settler`` (the real CLI, in this process) with a target side that stalls once it is being
read: prints ``FETCHING`` and sleeps, so the test can kill or signal the process in the middle of a run.
Usage: stalled_run.py SETTLER_ARGS..."""

from __future__ import annotations

import sys
import time
from typing import Any

from settler_pipeline.application import attempt
from settler_pipeline.cli.main import main

real_spill_side = attempt.spill_side


def stalling_spill_side(*args: Any, **kwargs: Any) -> Any:
    if kwargs.get("side") == "target":
        print("FETCHING", flush=True)
        time.sleep(600)
    return real_spill_side(*args, **kwargs)


attempt.spill_side = stalling_spill_side  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv = ["settler", *sys.argv[1:]]
    main()
