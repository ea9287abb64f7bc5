"""Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (default ``dev``).

``ci`` (the full gate, `make test`) replays the same examples on every run so a red build is
reproducible, at each property's full example count. ``dev`` (`make test-fast`, the edit-test loop)
draws fresh examples on every run and runs a quarter of them: repeated runs keep exploring new inputs
while one run stays fast, and the gate still runs every property at its full count.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
DEV_SHARE = 4
"""``dev`` runs 1/DEV_SHARE of a property's examples (and of Hypothesis' default 100)."""

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile(
    "dev", max_examples=100 // DEV_SHARE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def examples(full: int) -> int:
    """A property's example count under the loaded profile: ``full`` in ``ci``, a share (at least 10)
    in ``dev``."""
    return full if PROFILE == "ci" else max(10, full // DEV_SHARE)
