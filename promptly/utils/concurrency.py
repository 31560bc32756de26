"""Overlapping slow calls (HTTP requests to a model server) while keeping their results in order; one model
load at a time in a process."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MODEL_LOADS = threading.RLock()
"""Held while a model is built from its weights (a served model, the embedder). transformers swaps torch's
init functions for no-ops process-wide while it loads (`transformers.initialization.no_init_weights`), so two
loads in two threads can restore each other's patches in the wrong order; a server that loaded its model on
one thread while its embedder loaded on another answered in random words."""


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
