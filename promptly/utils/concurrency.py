"""Overlapping slow calls (HTTP requests to a model server) while keeping their results in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_order(work: Callable[[T], R], items: Sequence[T], concurrency: int) -> Iterator[R]:
    """work(item) for each item, results in order, at most `concurrency` running and a few more queued.

    Lazy: stopping the iteration (an error) cancels what has not started; nothing runs far ahead.
    """
    if concurrency <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="qa-generate") as pool:
        pending: deque[Future[R]] = deque()
        upcoming = iter(items)
        try:
            for item in upcoming:
                pending.append(pool.submit(work, item))
                if len(pending) >= 2 * concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
