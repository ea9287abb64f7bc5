"""Runs ``settler`` (the real CLI, in this process) with a target side that stalls once it is being
read: prints ``FETCHING`` and sleeps, so the test can kill or signal the process in the middle of a run.
Usage: stalled_run.py SETTLER_ARGS..."""

from __future__ import annotations

import sys
import time
from typing import Any

from settler_pipeline.application import attempt
from settler_pipeline.cli.main import main

real_load_side = attempt.load_side


def stalling_load_side(*args: Any, **kwargs: Any) -> Any:
    if kwargs.get("side") == "target":
        print("FETCHING", flush=True)
        time.sleep(600)
    return real_load_side(*args, **kwargs)


attempt.load_side = stalling_load_side  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv = ["settler", *sys.argv[1:]]
    main()
