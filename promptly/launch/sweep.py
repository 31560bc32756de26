"""A sweep's kernels: push them (a few at once), poll with backoff, bring each finished one back as a
local job folder, and keep a record (<sweep>/kaggle_launch.json) for `promptly launch status|pull`.

A kernel's outputs arrive as its ./job folder; they are laid out as <sweep>/<num>/ (result.json,
config.yaml, checkpoints/, model/, the run log) with the kernel's log beside them as kaggle.log, and
result.json's paths rewritten to the local folder, so `promptly runs`, `promptly eval run_dir=...` and
publishing read them like any local job.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from promptly.launch.kaggle import KaggleSession
from promptly.launch.kernel import JOB_DIR
from promptly.utils.redact import redact_text
from promptly.utils.results import RESULT_FILE, RunResult, read_result, write_result

log = logging.getLogger(__name__)

RECORD_FILE = "kaggle_launch.json"
KERNEL_LOG = "kaggle.log"
LOG_TAIL_LINES = 30


@dataclass
class KernelRecord:
    num: int
    kernel: str
    """owner/slug."""
    overrides: list[str]
    job_dir: str
    state: str = "NEW"
    """NEW (not pushed), QUEUED, RUNNING, COMPLETE, ERROR, ... as Kaggle reports it, or TIMEOUT."""
    pulled: bool = False
    message: str = ""
    pushed_at: float | None = None


@dataclass
class Outcome:
    """What the launcher turns into a JobReturn."""

    num: int
    ok: bool
    value: float | None = None
    error: str = ""
    job_dir: Path = field(default_factory=Path)


def save_record(sweep_dir: Path, records: list[KernelRecord]) -> None:
    path = sweep_dir / RECORD_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kernels": [asdict(r) for r in records]}, indent=2), encoding="utf-8")
    tmp.replace(path)


def load_record(sweep_dir: Path) -> list[KernelRecord]:
    path = sweep_dir / RECORD_FILE
    if not path.is_file():
        return []
    return [KernelRecord(**k) for k in json.loads(path.read_text(encoding="utf-8")).get("kernels", [])]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log_text(raw: str) -> str:
    """A kernel log as plain text: Kaggle serves it as a JSON list of {stream_name, time, data}, whose
    tracebacks carry terminal colours."""
    try:
        entries = json.loads(raw, strict=False)
    except ValueError:
        entries = raw
    if isinstance(entries, list):
        raw = "".join(str(e.get("data", "")) for e in entries if isinstance(e, dict))
    return _ANSI.sub("", raw)


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def lay_out(download: Path, slug: str, job_dir: Path, num: int) -> RunResult | None:
    """Move a kernel's downloaded ./job into job_dir (kernel log as kaggle.log); returns its result."""
    job_dir.mkdir(parents=True, exist_ok=True)
    src = download / JOB_DIR
    if src.is_dir():
        for item in src.iterdir():
            target = job_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(item), str(target))
    kernel_log = download / f"{slug}.log"
    if kernel_log.is_file():
        (job_dir / KERNEL_LOG).write_text(redact_text(log_text(kernel_log.read_text(encoding="utf-8"))),
                                          encoding="utf-8")
    result_path = job_dir / RESULT_FILE
    if not result_path.is_file():
        return None
    result = read_result(result_path)
    old = result.output_dir.rstrip("/")
    if old:
        result.best_model_path = (result.best_model_path or "").replace(old, str(job_dir), 1) or None
    result.output_dir, result.job_num = str(job_dir), num
    write_result(job_dir, result)
    return result


def collect(session: KaggleSession, record: KernelRecord) -> Outcome:
    """Download a finished kernel's outputs into its job folder and judge it."""
    job_dir = Path(record.job_dir)
    slug = record.kernel.split("/", 1)[1]
    with tempfile.TemporaryDirectory(prefix="kaggle-output-") as tmp:
        session.output(record.kernel, Path(tmp))
        result = lay_out(Path(tmp), slug, job_dir, record.num)
    record.pulled = True
    log_file = job_dir / KERNEL_LOG
    log_tail = tail(log_file.read_text(encoding="utf-8")) if log_file.is_file() else ""
    if record.state == "COMPLETE" and result is not None and result.status == "ok":
        return Outcome(record.num, True, result.value, job_dir=job_dir)
    why = (result.error if result and result.error else "") or record.message or f"kernel state {record.state}"
    record.message = why
    return Outcome(record.num, False, error=f"kernel {record.kernel} failed: {why}\n{log_tail}", job_dir=job_dir)


@dataclass
class Polling:
    interval_s: float
    backoff: float
    max_interval_s: float
    timeout_s: float
    max_parallel: int


def run_kernels(session: KaggleSession, records: list[KernelRecord], push: Callable[[KernelRecord], None],
                sweep_dir: Path, polling: Polling, sleep: Callable[[float], None] = time.sleep) -> list[Outcome]:
    """Push every kernel (at most max_parallel running), follow them, collect each as it finishes.
    A kernel that fails is a failed job; a kernel past the timeout is left running (TIMEOUT in the
    record, `promptly launch pull` fetches it later). The others go on either way."""
    pending, running, outcomes = list(records), list[KernelRecord](), dict[int, Outcome]()
    interval = polling.interval_s
    while pending or running:
        while pending and len(running) < polling.max_parallel:
            rec = pending.pop(0)
            push(rec)
            rec.state, rec.pushed_at = "QUEUED", time.time()
            running.append(rec)
            log.info("kernel %s pushed (job %d)", rec.kernel, rec.num)
            save_record(sweep_dir, records)
        sleep(interval)
        interval = min(interval * polling.backoff, polling.max_interval_s)
        for rec in list(running):
            status = session.status(rec.kernel)
            rec.state, rec.message = status.state, status.message
            if status.finished:
                outcomes[rec.num] = collect(session, rec)
                running.remove(rec)
                log.info("kernel %s: %s", rec.kernel, status.state)
            elif time.time() - (rec.pushed_at or 0) > polling.timeout_s:
                rec.state = "TIMEOUT"
                running.remove(rec)
                outcomes[rec.num] = Outcome(rec.num, False, error=(
                    f"kernel {rec.kernel} did not finish within timeout_s={polling.timeout_s:g} (last state "
                    f"{status.state}); it may still be running: `promptly launch pull dir={sweep_dir}` fetches it"),
                    job_dir=Path(rec.job_dir))
        save_record(sweep_dir, records)
    return [outcomes[r.num] for r in records]
