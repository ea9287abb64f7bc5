"""The quarantine folder: where the store moves files and bytes it does not recognise as part of the
log, instead of deleting them (``log/quarantine/<UTC time>-<pid>/``, keeping relative paths).

Nothing in the store ever unlinks data it did not itself just supersede; an operator inspects the
quarantine folder and deletes it when satisfied."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from settler_pipeline.files import fsync_dir


def new_folder(log_root: Path) -> Path:
    """A fresh quarantine folder under ``log_root`` (created)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = log_root / "quarantine" / f"{stamp}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def move_aside(log_root: Path, paths: Sequence[Path]) -> Path | None:
    """Move ``paths`` (files under ``log_root``) into a new quarantine folder; its path, or ``None``
    when there was nothing to move."""
    existing = [p for p in paths if p.exists()]
    if not existing:
        return None
    folder = new_folder(log_root)
    for path in existing:
        target = folder / path.relative_to(log_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        fsync_dir(path.parent)
    return folder


def save_bytes(log_root: Path, name: str, content: bytes) -> Path:
    """Keep ``content`` (e.g. a torn record about to be cut off a file) in a new quarantine folder."""
    target = new_folder(log_root) / name
    with open(target, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return target
