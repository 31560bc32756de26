"""NotifyCallback: training's start, success (headline metrics, where the run is) and failure (error and
log tail), sent by rank zero through promptly.notify. Off by default; `callbacks=with_notify` (or
`'callbacks=[default,notify]'`) turns it on, and the webhooks come from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from promptly.notify.channels import Delivery, Retry, notify
from promptly.notify.jobs import notify_failure
from promptly.notify.message import MAX_METRICS, Event, Message


def headline_metrics(logged: dict[str, Any], first: list[str]) -> dict[str, float]:
    """The metrics named in `first` (those logged), then the other validation metrics, then the rest;
    at most MAX_METRICS scalars."""
    scalars: dict[str, float] = {}
    for key, value in logged.items():
        if getattr(value, "numel", lambda: 1)() == 1:
            scalars[str(key)] = float(value)
    ordered = [k for k in first if k in scalars]
    ordered += sorted(k for k in scalars if k.startswith("val/") and k not in ordered)
    ordered += sorted(k for k in scalars if k not in ordered)
    return {k: scalars[k] for k in ordered[:MAX_METRICS]}


def _tracking_url(trainer: L.Trainer) -> str | None:
    """An experiment tracker's page for the run (W&B online), if a logger has one."""
    for logger in trainer.loggers:
        experiment = getattr(logger, "_experiment", None)
        url = getattr(experiment, "url", None)
        if isinstance(url, str) and url.startswith("http"):
            return url
    return None


class NotifyCallback(L.Callback):
    """Send start / success / failure messages for one training run (rank zero only)."""

    def __init__(self, title: str | None = None, run_dir: str | None = None, metrics: list[str] | None = None,
                 events: list[str] | None = None, attempts: int = 3, timeout_s: float = 5.0,
                 backoff_s: float = 1.0) -> None:
        self.title = title
        self.run_dir = run_dir
        self.metrics = list(metrics or [])
        self.events = {Event(e) for e in (events if events is not None else list(Event))}
        self.retry = Retry(attempts=attempts, timeout_s=timeout_s, backoff_s=backoff_s)
        self.sent: list[Delivery] = []
        """Every delivery made, in order (what tests and curious callers read)."""

    def _title(self) -> str:
        if self.title:
            return self.title
        from promptly.utils.naming import run_identity

        return f"train {run_identity().name}"

    def _send(self, message: Message) -> None:
        if message.event in self.events:
            self.sent += notify(message, self.retry)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else "?"
            self._send(Message(Event.start, self._title(), run_dir=self.run_dir,
                               text=f"training started: {epochs} epoch(s) on {trainer.num_devices} "
                                    f"{type(trainer.accelerator).__name__.removesuffix('Accelerator')} device(s)"))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.interrupted:
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
            text = f"training finished after {trainer.current_epoch} epoch(s), {trainer.global_step} step(s)"
            self._send(Message(Event.success, self._title(), text=text + (f"; best {Path(best).name}" if best else ""),
                               metrics=headline_metrics(dict(trainer.callback_metrics), self.metrics),
                               url=_tracking_url(trainer), run_dir=self.run_dir))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero and Event.failure in self.events:
            self.sent += notify_failure(self._title(), exception, self.run_dir, self.retry)
