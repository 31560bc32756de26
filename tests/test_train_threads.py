"""torch threads from the cores this process may really use (promptly.utils.hardware.choose_threads)."""

from __future__ import annotations

import os

import pytest
import torch

from promptly.errors import ConfigError
from promptly.utils.hardware import THREADS_ENV, apply_threads, choose_threads, resolve_threads


def test_a_quiet_machine_gets_one_thread_per_usable_core() -> None:
    assert choose_threads(usable_cpus=2, quota_cpus=None, busy_cpus=0.0) == 2
    assert choose_threads(usable_cpus=16, quota_cpus=None, busy_cpus=0.2) == 16


def test_busy_cores_are_given_up() -> None:
    assert choose_threads(usable_cpus=2, quota_cpus=None, busy_cpus=1.0) == 1  # one CPU-burning neighbour
    assert choose_threads(usable_cpus=8, quota_cpus=None, busy_cpus=3.0) == 5
    assert choose_threads(usable_cpus=2, quota_cpus=None, busy_cpus=6.0) == 1  # never fewer than one


def test_affinity_and_cgroup_quota_cap_the_count() -> None:
    assert choose_threads(usable_cpus=64, quota_cpus=2.0, busy_cpus=0.0) == 2  # a container with 2 CPUs of quota
    assert choose_threads(usable_cpus=64, quota_cpus=0.5, busy_cpus=0.0) == 1
    assert choose_threads(usable_cpus=4, quota_cpus=8.0, busy_cpus=0.0) == 4  # taskset to 4 cores


def test_the_setting_overrides_and_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_ENV, "1")
        choice = apply_threads()
        assert choice.threads == 1 and torch.get_num_threads() == 1 and THREADS_ENV in choice.reason
        assert resolve_threads("3").threads == 3
        auto = resolve_threads("auto")
        assert 1 <= auto.threads <= len(os.sched_getaffinity(0))
        for bad in ("0", "many"):
            with pytest.raises(ConfigError, match=THREADS_ENV):
                resolve_threads(bad)
    finally:
        torch.set_num_threads(before)
