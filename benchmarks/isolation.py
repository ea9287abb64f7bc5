"""Running one benchmark measurement in a fresh process, so its peak memory is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure_in_subprocess(module: str, size: int) -> dict[str, Any]:
    """Run ``python -m <module> --single <size>`` from the repository root and return the JSON it
    prints last; a failing process yields ``{"size", "skipped"}`` with its last error line."""
    child = subprocess.run(
        [sys.executable, "-m", module, "--single", str(size)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if child.returncode != 0:
        return {"size": size, "skipped": f"failed: {child.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result
