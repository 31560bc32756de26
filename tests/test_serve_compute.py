"""The server's torch work runs on one compute thread (promptly/serving/compute.py): calls from any thread run
there, a call from the thread itself runs in place, errors reach the caller. (That a served answer's
every forward pass runs on it: tests/test_serve_api.py, on that module's server.)"""

from __future__ import annotations

import threading

import pytest

from promptly.serving.compute import ComputeThread


def test_calls_from_many_threads_run_on_one_thread_and_raise_to_their_caller() -> None:
    compute = ComputeThread()
    ran: list[tuple[int, int]] = []

    def record(i: int) -> int:
        ran.append((i, threading.get_ident()))
        return i * 2

    results: dict[int, int] = {}
    callers = [threading.Thread(target=lambda i=i: results.__setitem__(i, compute.run(record, i))) for i in range(6)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert results == {i: i * 2 for i in range(6)}
    assert {ident for _, ident in ran} == {compute.ident} and compute.ident not in {t.ident for t in callers}
    assert next(t for t in threading.enumerate() if t.ident == compute.ident).daemon  # never holds up an exit
    assert compute.run(lambda: compute.run(record, 9)) == 18  # a nested call runs in place instead of waiting
    with pytest.raises(ZeroDivisionError):
        compute.run(lambda: 1 / 0)
    assert compute.run(record, 1) == 2  # the thread survives a failed call
