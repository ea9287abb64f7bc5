"""Prefetch: the next item of an iterator made on a worker thread while the caller uses the current.

A run's steps are Polars work (which runs outside the interpreter's lock) in a fixed order: while one
chunk of events is appended, the next can be built on the other core. Exactly one item is made ahead,
so at most two exist at once (the one in use and the next).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

T = TypeVar("T")
_END = object()


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` in order, each next one made on a worker thread while the caller holds the current
    one. An exception of ``items`` is raised where its item would have been handed out; a caller that
    stops early (``close``) waits for the item in the making, which is then dropped."""

    def make() -> object:
        return next(items, _END)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settler-ahead") as pool:
        coming: Future[object] = pool.submit(make)
        try:
            while True:
                item = coming.result()
                if item is _END:
                    return
                coming = pool.submit(make)
                yield cast(T, item)
        finally:
            coming.cancel()
