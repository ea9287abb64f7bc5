"""Durable file replacement, written once.

Every file Settler publishes (the log's commit points, read-model tables and their generations, the
analysts' database, the access file, generated samples) is written the same way: to a staging name
beside the target that no ``*.parquet``/``*.json`` glob matches, fsynced, renamed over the target with
``os.replace`` (atomic on POSIX: a reader sees the old file or the new one, never half of one), and the
directory fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path


def staging_path(path: Path) -> Path:
    """A temporary name beside ``path``, private to this process, that no glob for ``path``'s kind of
    file matches (it starts with a dot and ends in ``.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to stable storage."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(directory: Path) -> None:
    """Make renames and creations inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_all(paths: Iterable[Path]) -> None:
    """Flush every file and directory of ``paths`` to stable storage, all at once. The file system
    commits fsyncs issued together in shared journal commits, so many cost about what one or two do:
    12 files of 2 MB took 0.12-0.73 s one after another on a shared disk, 0.02-0.05 s together."""
    todo = list(dict.fromkeys(paths))

    def one(path: Path) -> None:
        if path.is_dir():
            fsync_dir(path)
        else:
            fsync_file(path)

    if len(todo) < 2:
        for path in todo:
            one(path)
        return
    with ThreadPoolExecutor(max_workers=min(len(todo), 16), thread_name_prefix="settler-fsync") as pool:
        list(pool.map(one, todo))


def replace_durably(staging: Path, target: Path) -> None:
    """fsync ``staging``, rename it over ``target``, fsync the directory: once this returns, ``target``
    holds the new content and keeps it through a crash."""
    fsync_file(staging)
    os.replace(staging, target)
    fsync_dir(target.parent)


@contextmanager
def removed_on_failure(staging: Path) -> Iterator[Path]:
    """Yield ``staging``; when the block raises, the file is removed (a partial file left by a full
    disk would otherwise hold the space the next attempt needs)."""
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_replace(target: Path) -> Iterator[Path]:
    """Yield a staging path to write ``target``'s new content to; when the block ends normally the
    content replaces ``target`` durably (:func:`replace_durably`), and when it raises, ``target`` is
    untouched and the staging file is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(target)
    staging.unlink(missing_ok=True)
    try:
        yield staging
        replace_durably(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def write_atomic(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` atomically and durably."""
    with atomic_replace(path) as staging:
        staging.write_bytes(content)
