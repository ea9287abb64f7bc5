"""Runs ``settler`` (the real CLI, in this process) with a pause between the check that a job's days
are not reconciled yet and the start's append: prints ``CHECKED`` and sleeps, so two such processes
started together both reach the append while the other's start is not in the log yet, unless the start
lock makes the second wait. Usage: racing_start.py SETTLER_ARGS..."""

from __future__ import annotations

import sys
import time
from typing import Any

from settler_pipeline.application import service
from settler_pipeline.cli.main import main

real_live_runs = service.live_runs  # type: ignore[attr-defined]


def slow_live_runs(*args: Any, **kwargs: Any) -> Any:
    found = real_live_runs(*args, **kwargs)
    print("CHECKED", flush=True)
    time.sleep(1.5)
    return found


service.live_runs = slow_live_runs  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv = ["settler", *sys.argv[1:]]
    main()
