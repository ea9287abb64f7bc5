"""Prefetch hands out an iterator's items in order, making exactly one ahead on a worker thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from settler_pipeline.application.prefetch import ahead


def test_items_come_in_order_each_made_once_and_at_most_one_ahead() -> None:
    made: list[int] = []
    threads: set[str] = set()

    def items() -> Iterator[int]:
        for i in range(5):
            threads.add(threading.current_thread().name)
            made.append(i)
            yield i

    seen = []
    for item in ahead(items()):
        # the item in use and, at most, the next one exist
        assert made[-1] <= item + 1
        seen.append(item)
    assert seen == made == [0, 1, 2, 3, 4]
    assert threads and all(name.startswith("settler-ahead") for name in threads)


def test_an_error_is_raised_where_its_item_would_have_come() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise ValueError("broken input")

    out = ahead(items())
    assert next(out) == 1
    with pytest.raises(ValueError, match="broken input"):
        next(out)


def test_a_caller_stopping_early_leaves_the_rest_unmade() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            made.append(i)
            yield i

    out = ahead(items())
    assert next(out) == 0
    out.close()
    # at most the one in the making when it stopped (cancelled if not started yet), no more
    assert made in ([0], [0, 1])


def test_nothing_in_nothing_out() -> None:
    assert list(ahead(iter([]))) == []
