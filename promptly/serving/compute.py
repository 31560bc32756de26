"""One thread for every torch computation of the server: model loads, prefill and decode steps, query, evidence
and upload embeddings.

Why one: each thread that runs a parallel torch operator gets an OpenMP team of its own (torch's CPU wheels
use GNU OpenMP), and while a process holds more OpenMP threads than the machine has CPUs, GNU OpenMP stops
spinning between operators (a throttled spin of ~100 iterations), so every operator of a decode step waits on
a futex wake-up. Measured on the 2-core dev VM, SmolLM2 bf16, 2 torch threads: a decode step of 8 rows took
55 ms from the only thread that ever ran torch and 80 ms from a second one (1 row: 44 against 67 ms); with
every load and embedding on the same thread the generation thread keeps the fast path (benchmarks/README.md).
Requests wait their turn here instead of running their embeddings beside generation: the CPU is shared
either way, and the queue is FIFO. Model loads are the exception: they run on a thread of their own that ends
with the load (`on_passing_thread`), so the served model keeps answering while a promoted one loads, and the
load's OpenMP team ends with its thread (measured: decode from a later thread is fast again).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

THREAD_NAME = "promptly-compute"


class ComputeThread:
    """Runs callables on one long-lived daemon thread (like the server's other threads: a stopped server's
    process exits without waiting for it), in the order they come; a call made from that thread runs in
    place (no deadlock when a computation calls another)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            future, call = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as err:  # handed to the caller, who raises it
                future.set_exception(err)

    @property
    def ident(self) -> int | None:
        """The thread's id once it has started (for checks: which thread ran a computation)."""
        return self._thread.ident if self._thread is not None else None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the compute thread; its result, or its exception raised here."""
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            return fn(*args, **kwargs)
        self._started()
        future: Future[T] = Future()
        self._work.put((future, lambda: fn(*args, **kwargs)))
        return future.result()


COMPUTE = ComputeThread()
"""The process's compute thread: OpenMP teams are per process, so there is one for all engines and tests."""


def on_compute_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, run on the process's compute thread."""
    return COMPUTE.run(fn, *args, **kwargs)


def on_passing_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on a new thread that ends with it: for work that must not wait for the compute
    thread (a model load while the served model answers); the thread's OpenMP team ends with the thread."""
    outcome: Future[T] = Future()

    def call() -> None:
        try:
            outcome.set_result(fn(*args, **kwargs))
        except BaseException as err:  # handed to the caller, who raises it
            outcome.set_exception(err)

    thread = threading.Thread(target=call, name=f"{THREAD_NAME}-passing", daemon=True)
    thread.start()
    thread.join()
    return outcome.result()
