"""The server's torch work runs on one compute thread (promptly/serving/compute.py): calls from any thread run
there, a call from the thread itself runs in place, errors reach the caller; a model load's passing thread is
neither the caller nor the compute thread and has ended when the load returns. (That a served answer's
every forward pass runs on it: tests/test_serve_api.py, on that module's server.)"""

from __future__ import annotations

import threading

import pytest

from promptly.serving.compute import COMPUTE, ComputeThread, on_passing_thread


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


def test_a_passing_thread_is_its_own_and_has_ended_when_its_call_returns() -> None:
    seen: list[threading.Thread] = []
    assert on_passing_thread(lambda x: seen.append(threading.current_thread()) or x + 1, 1) == 2
    [thread] = seen
    assert thread is not threading.current_thread() and thread.ident != COMPUTE.ident
    assert not thread.is_alive()  # its OpenMP team, if it made one, is gone with it

    def fail() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        on_passing_thread(fail)
