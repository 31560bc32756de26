"""Failure messages for jobs: the error, and the tail of the run's log with the traceback's last lines,
shared by the training callback and by `task_wrapper` (for every verb, when PROMPTLY_NOTIFY asks).

An exception that was already reported is marked, so a training failure reported by the callback is
not reported a second time by the wrapper it propagates through.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from pathlib import Path

from promptly.notify.channels import Delivery, Retry, notify, webhooks_from_env
from promptly.notify.message import LOG_TAIL_LINES, Event, Message

NOTIFY_ENV = "PROMPTLY_NOTIFY"
"""`failure`: every verb that runs under task_wrapper reports its failures (unset or `off`: none)."""
_NOTIFIED = "_promptly_notified"


def log_tail(run_dir: str | Path | None, err: BaseException | None = None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the run folder's newest log file, then the last lines of the traceback."""
    parts: list[str] = []
    folder = Path(run_dir) if run_dir else None
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder and folder.is_dir() else []
    if logs:
        text = logs[-1].read_text(encoding="utf-8", errors="replace")
        parts += text.rstrip().splitlines()[-(lines // 2):]
    if err is not None:
        trace = "".join(traceback.format_exception(err)).rstrip().splitlines()
        parts += trace[-(lines - len(parts)):]
    return "\n".join(parts[-lines:])


def failure_message(title: str, err: BaseException, run_dir: str | Path | None, text: str = "") -> Message:
    interrupted = isinstance(err, KeyboardInterrupt)
    return Message(Event.failure, title, text=text or ("interrupted" if interrupted else "the job failed"),
                   run_dir=str(run_dir) if run_dir else None, error=f"{type(err).__name__}: {err}",
                   log_tail=log_tail(run_dir, err))


def mark_notified(err: BaseException) -> None:
    with contextlib.suppress(AttributeError):  # a type with __slots__: a second message is the worst case
        setattr(err, _NOTIFIED, True)


def was_notified(err: BaseException) -> bool:
    return bool(getattr(err, _NOTIFIED, False))


def notify_failure(title: str, err: BaseException, run_dir: str | Path | None,
                   retry: Retry | None = None) -> list[Delivery]:
    """Report a failure once (a second call for the same exception sends nothing)."""
    if was_notified(err):
        return []
    mark_notified(err)
    return notify(failure_message(title, err, run_dir), retry or Retry())


def failures_enabled() -> bool:
    """PROMPTLY_NOTIFY=failure and somewhere to send to (a webhook, or GitHub Actions)."""
    wanted = os.environ.get(NOTIFY_ENV, "").strip().lower() in ("failure", "failures")
    return wanted and (bool(webhooks_from_env()) or os.environ.get("GITHUB_ACTIONS") == "true")
