"""Failure alerts: a failed reconciliation or pipeline run is recorded once and reported through
pluggable hooks (a log line and a JSON file by default; a webhook when a URL is configured).

The JSON file, ``<directory>/<run id>.json``, is the record: a run that already has one is not reported
again, so a sensor that sees the same failure twice (a restart, a retried tick) alerts once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

from settler_pipeline.errors import ValidationError

LOG: Final = logging.getLogger("settler_pipeline.alerts")
_RUN_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}")  # fullmatch: no leading dot, no line feed


@dataclass(frozen=True)
class FailureAlert:
    """What failed: the run (as the scheduler names it), its job, the error, and what it was doing."""

    run_id: str
    job_name: str
    message: str
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    partition: str | None = None
    assets: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["failed_at"] = self.failed_at.isoformat()
        body["assets"] = list(self.assets)
        return body


AlertHook = Callable[[FailureAlert], None]


def log_hook(alert: FailureAlert) -> None:
    """One WARNING line naming the run, its job and the error."""
    where = f" partition {alert.partition}" if alert.partition else ""
    LOG.warning("run %s of %s%s failed: %s", alert.run_id, alert.job_name, where, alert.message)


def webhook_hook(url: str, *, timeout_s: float = 10.0) -> AlertHook:
    """A hook that POSTs the alert as JSON to ``url`` (http or https). Delivery problems are logged,
    never raised: an alert must not turn into a second failure."""
    if urlparse(url).scheme not in ("http", "https"):
        raise ValidationError(
            f"alert webhook URL must be http(s), got {url!r}", hint="e.g. https://host/hook"
        )

    def post(alert: FailureAlert) -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(alert.to_dict()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                pass
        except OSError as exc:
            LOG.error("alert webhook %s failed for run %s: %s", url, alert.run_id, exc)

    return post


class AlertRecorder:
    """Records each failed run once (a JSON file under ``directory``) and calls the hooks for it."""

    def __init__(self, directory: Path, hooks: Sequence[AlertHook] = (log_hook,)) -> None:
        self.directory = directory
        self.hooks = list(hooks)

    def path(self, run_id: str) -> Path:
        if not _RUN_ID.fullmatch(run_id):
            raise ValidationError(f"run id {run_id!r} cannot name an alert file")
        return self.directory / f"{run_id}.json"

    def record(self, alert: FailureAlert) -> bool:
        """Write the alert's file and call every hook, unless this run was recorded before. Returns
        whether it was new."""
        target = self.path(alert.run_id)
        if target.exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.tmp")
        staging.write_text(json.dumps(alert.to_dict(), indent=2, sort_keys=True))
        try:
            os.link(staging, target)  # atomic and exclusive: a concurrent recorder of the same run loses
        except FileExistsError:
            return False
        finally:
            staging.unlink(missing_ok=True)
        for hook in self.hooks:
            try:
                hook(alert)
            except Exception:  # one broken hook must not silence the others
                LOG.exception("alert hook %r failed for run %s", hook, alert.run_id)
        return True

    def recorded(self) -> list[dict[str, Any]]:
        """Every alert recorded, oldest first."""
        if not self.directory.is_dir():
            return []
        alerts = [json.loads(p.read_text()) for p in self.directory.glob("*.json")]
        return sorted(alerts, key=lambda a: str(a["failed_at"]))
