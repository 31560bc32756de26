"""What this machine can do, resolved once per run: training precision and weight dtype, and how many
compute threads this process should use.

Two pure functions make the choices (`choose_precision`, `choose_threads`) and are tested per case;
the `detect_*` helpers read the machine. Training (`promptly.verbs.train`) and the answering verbs
(`promptly.model.loading`) both call `apply_threads`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from promptly.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
THREADS_ENV = "PROMPTLY_NUM_THREADS"
"""An integer fixes torch's intra-op threads; unset or `auto` lets promptly choose (see choose_threads)."""

HALF = {"bf16": torch.bfloat16, "16": torch.float16}
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# -- precision -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    """The device a run trains on, as far as precision is concerned."""

    gpu: bool
    """A CUDA GPU does the work (else the CPU)."""
    bf16: bool
    """The device computes bfloat16 natively (a GPU with bf16; a CPU with AMX or AVX512-BF16)."""

    @property
    def name(self) -> str:
        kind = "GPU" if self.gpu else "CPU"
        return f"this {kind} {'computes' if self.bf16 else 'lacks native'} bf16"


@dataclass(frozen=True)
class PrecisionChoice:
    """Lightning's precision and the dtype the (frozen) base weights are built in."""

    precision: str
    """A Lightning precision string: bf16-mixed, 16-mixed, 32-true, ..."""
    weight_dtype: str
    """float32, bfloat16 or float16: how the base model's weights are built (trainable adapters stay fp32)."""
    reason: str
    """One line saying why, printed once and recorded in result.json."""


def cpu_bf16_native(cpuinfo: str | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo: oneDNN then runs bf16 matmuls several times faster than fp32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    return " avx512_bf16" in cpuinfo or " amx_bf16" in cpuinfo


def detect_hardware(accelerator: str = AUTO) -> Hardware:
    """The device Lightning will train on for trainer.accelerator (cpu, gpu/cuda or auto)."""
    gpu = torch.cuda.is_available() and str(accelerator) not in ("cpu",)
    if gpu:
        return Hardware(gpu=True, bf16=bool(torch.cuda.is_bf16_supported()))
    return Hardware(gpu=False, bf16=cpu_bf16_native())


def _half_of(precision: str) -> torch.dtype | None:
    """bf16 or fp16 when the precision computes in half precision, else None."""
    return next((d for prefix, d in HALF.items() if precision.startswith(prefix)), None)


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPE_NAMES.items() if d == dtype)


def choose_precision(precision: str, weight_dtype: str, adapter_only: bool, hardware: Hardware) -> PrecisionChoice:
    """Precision and base-weight dtype for a run; whatever the user set explicitly wins.

    `auto` precision: bf16-mixed where the device computes bf16 natively, fp16-mixed (with a loss
    scaler) on GPUs without it, fp32 elsewhere. On a CPU bf16 autocast pays only when the base weights
    are bf16 too (frozen, i.e. LoRA, or set so): autocast over fp32 weights re-casts every weight at
    every step and measured 3x slower than plain fp32, so a fully trained model stays fp32 there.
    `auto` weight dtype: the half dtype of the precision for frozen base weights (adapters stay fp32),
    fp32 for trained weights under mixed precision.
    """
    if weight_dtype != AUTO and weight_dtype not in DTYPE_NAMES:
        raise ConfigError(f"model.dtype must be auto or one of {sorted(DTYPE_NAMES)}, got {weight_dtype!r}")
    reason = "set by trainer.precision"
    if str(precision) == AUTO:
        if hardware.gpu:
            precision = "bf16-mixed" if hardware.bf16 else "16-mixed"
            reason = f"auto: {hardware.name}"
        elif hardware.bf16 and (weight_dtype == "bfloat16" or (weight_dtype == AUTO and adapter_only)):
            precision, reason = "bf16-mixed", f"auto: {hardware.name} and the base weights are frozen"
        else:
            precision = "32-true"
            reason = (f"auto: {hardware.name}" if not hardware.bf16 else
                      f"auto: {hardware.name}, but trained fp32 weights under bf16 autocast are slower than fp32")
    precision = str(precision)
    if weight_dtype != AUTO:
        dtype = weight_dtype
    else:
        half = _half_of(precision)
        true_half = half is not None and precision.endswith("-true")
        dtype = _dtype_name(half) if half is not None and (adapter_only or true_half) else "float32"
    return PrecisionChoice(precision=precision, weight_dtype=dtype, reason=reason)


# -- threads -------------------------------------------------------------------------------------------
def choose_threads(usable_cpus: int, quota_cpus: float | None, busy_cpus: float) -> int:
    """torch intra-op threads from the cores this process may use and how many of them others keep busy.

    More compute threads than free cores make the threads wait on each other at every parallel region,
    and throughput collapses (17x measured on a 2-core machine), so busy cores are given up: one thread
    per core that is allowed (affinity, cgroup quota) and not busy, at least one.
    """
    limit = max(1, usable_cpus)
    if quota_cpus is not None and quota_cpus > 0:
        limit = max(1, min(limit, math.floor(quota_cpus)))
    free = limit - max(0.0, busy_cpus)
    return max(1, min(limit, math.floor(free + 0.5)))


def usable_cpu_set() -> set[int]:
    """The CPUs this process may run on (its affinity)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def cgroup_quota_cpus() -> float | None:
    """The cgroup's CPU quota in cores (v2 cpu.max, v1 cfs quota), None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over `cpus` from /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]
        idle = values[3] + values[4]  # idle + iowait
        total += sum(values)
        busy += sum(values) - idle
    return (busy, total) if total else None


def busy_cpus(cpus: set[int], interval_s: float = 0.25) -> float:
    """How many of `cpus` other processes keep busy now (sampled over interval_s, this process excluded);
    falls back to the 1-minute load average."""
    first = _cpu_times(cpus)
    own_start = time.process_time()
    time.sleep(interval_s)
    second = _cpu_times(cpus)
    own = time.process_time() - own_start
    if first is None or second is None or second[1] <= first[1]:
        try:
            return min(float(len(cpus)), os.getloadavg()[0])
        except OSError:
            return 0.0
    fraction = (second[0] - first[0]) / (second[1] - first[1])
    return max(0.0, fraction * len(cpus) - own / interval_s)


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def resolve_threads(setting: str | None = None) -> ThreadChoice:
    """The thread count for `setting` (default: $PROMPTLY_NUM_THREADS): an integer as given, auto measured."""
    value = (setting if setting is not None else os.environ.get(THREADS_ENV, AUTO)).strip() or AUTO
    if value != AUTO:
        try:
            n = int(value)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV} must be auto or a positive integer, got {value!r}") from None
        if n < 1:
            raise ConfigError(f"{THREADS_ENV} must be auto or a positive integer, got {value!r}")
        return ThreadChoice(n, f"set by {THREADS_ENV}")
    cpus = usable_cpu_set()
    quota = cgroup_quota_cpus()
    busy = busy_cpus(cpus)
    n = choose_threads(len(cpus), quota, busy)
    quota_text = f", cgroup quota {quota:g}" if quota is not None else ""
    return ThreadChoice(n, f"auto: {len(cpus)} usable CPUs{quota_text}, {busy:.1f} busy with other work "
                           f"({THREADS_ENV} overrides)")


def apply_threads(setting: str | None = None) -> ThreadChoice:
    """Set torch's intra-op threads (resolve_threads) and say so once."""
    choice = resolve_threads(setting)
    torch.set_num_threads(choice.threads)
    log.info("torch threads: %d (%s)", choice.threads, choice.reason)
    return choice
