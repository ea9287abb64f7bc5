"""A run's state: what the aggregate remembers between commands (and what a snapshot stores).

Kept small on purpose: counts for the current attempt plus the *open* review items (proposals and
exceptions), never the list of matched records, so a million-match run folds into a state the size of
its exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from settler_pipeline.domain.reconciliation.status import NEW, RunStatus

SNAPSHOT_SCHEMA_VERSION: Final = 2  # 2: an attempt that did not complete has no open items
"""Bump when the state's shape changes: snapshots of another version are ignored and rebuilt."""


@dataclass(frozen=True)
class Counts:
    """What the current attempt found so far."""

    source_records: int = 0
    target_records: int = 0
    matched: int = 0
    proposed: int = 0
    unmatched_source: int = 0
    unmatched_target: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass(frozen=True)
class ReconciliationState:
    """A run's state after ``version`` events."""

    reconciliation_id: str | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None  # the run's correlation id (every event of the run carries it)
    job_id: str | None = None
    status: RunStatus = NEW
    attempt: int = 0
    version: int = 0
    date_range: tuple[str, str] | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)
    counts: Counts = Counts()
    open_proposals: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    open_exceptions: Mapping[str, str] = field(default_factory=dict)  # exception id -> reason
    last_error: Mapping[str, Any] | None = None
    resolved: int = 0  # review decisions taken
    supersedes: tuple[str, ...] = ()  # runs this one replaces when it completes (started with supersede)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the snapshot payload)."""
        return {
            "reconciliation_id": self.reconciliation_id,
            "tenant_id": self.tenant_id,
            "correlation_id": self.correlation_id,
            "job_id": self.job_id,
            "status": self.status,
            "attempt": self.attempt,
            "version": self.version,
            "date_range": list(self.date_range) if self.date_range else None,
            "spec": dict(self.spec),
            "counts": self.counts.__dict__,
            "open_proposals": {k: [list(s), list(t)] for k, (s, t) in sorted(self.open_proposals.items())},
            "open_exceptions": dict(sorted(self.open_exceptions.items())),
            "last_error": dict(self.last_error) if self.last_error else None,
            "resolved": self.resolved,
            "supersedes": list(self.supersedes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconciliationState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            reconciliation_id=data["reconciliation_id"],
            tenant_id=data["tenant_id"],
            correlation_id=data["correlation_id"],
            job_id=data["job_id"],
            status=RunStatus(data["status"]),
            attempt=data["attempt"],
            version=data["version"],
            date_range=(data["date_range"][0], data["date_range"][1]) if data["date_range"] else None,
            spec=data["spec"],
            counts=Counts(**data["counts"]),
            open_proposals={k: (tuple(v[0]), tuple(v[1])) for k, v in data["open_proposals"].items()},
            open_exceptions=dict(data["open_exceptions"]),
            last_error=data["last_error"],
            resolved=data["resolved"],
            supersedes=tuple(data.get("supersedes", ())),  # snapshots taken before the field existed
        )
