"""in_order: overlapping calls whose results come back in input order, with bounded look-ahead."""

from __future__ import annotations

import threading
import time

import pytest

from promptly.utils.concurrency import in_order


class Probe:
    """Records how many calls run at once and which ones started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.peak = 0
        self.started: list[int] = []

    def __call__(self, i: int) -> int:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(i)
        time.sleep(0.02 * (5 - i % 5))  # later items often finish first
        with self.lock:
            self.running -= 1
        if i == 13:
            raise ValueError("item 13 failed")
        return i * i


def test_results_come_in_order_with_bounded_concurrency() -> None:
    probe = Probe()
    assert list(in_order(probe, list(range(12)), concurrency=4)) == [i * i for i in range(12)]
    assert 2 <= probe.peak <= 4


def test_one_at_a_time_runs_in_the_callers_thread() -> None:
    seen: list[str] = []
    assert list(in_order(lambda i: seen.append(threading.current_thread().name) or i, [1, 2], 1)) == [1, 2]
    assert seen == [threading.current_thread().name] * 2


def test_stopping_early_leaves_the_rest_unstarted_and_errors_propagate() -> None:
    probe = Probe()
    results = in_order(probe, list(range(100)), concurrency=3)
    assert next(results) == 0
    results.close()  # the consumer stops (as `qa generate` does after too many failures)
    assert len(probe.started) <= 2 * 3 + 1  # a bounded look-ahead, not all 100 requests
    with pytest.raises(ValueError, match="item 13"):
        list(in_order(Probe(), list(range(20)), concurrency=3))
