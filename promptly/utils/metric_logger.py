"""What promptly asks of a metric logger, as one small protocol (torchtune's MetricLoggerInterface plus a
table), and the adapter that gives every Lightning logger (W&B, CSV, MLflow, TensorBoard) that shape.

Code that logs a table or a config talks to `MetricLogger`, never to a logger class: no
`isinstance(logger, WandbLogger)` branches, and a new backend needs one adapter, not a change at every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class MetricLogger(Protocol):
    """Scalars, a run's config, tables of rows; closed once at the end of the run."""

    def log(self, name: str, data: float, step: int) -> None:
        """One scalar at `step`."""
        ...

    def log_dict(self, payload: Mapping[str, float], step: int | None = None) -> None:
        """Several scalars at the same `step` (None: the backend's own count, for a one-off like eval)."""
        ...

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The run's (redacted) configuration."""
        ...

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                  step: int | None = None) -> None:
        """Rows under `columns` (sample answers, per-example scores); a backend without tables skips them,
        the run folder keeps them in its own files."""
        ...

    def close(self) -> None:
        """Flush and finish the run."""
        ...


class LightningMetricLogger:
    """A Lightning logger as a MetricLogger: scalars and config through its own API; tables through its
    `log_table` where it has one (W&B), else skipped (CSV, MLflow, TensorBoard keep scalars only)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def log(self, name: str, data: float, step: int) -> None:
        self.logger.log_metrics({name: data}, step=step)

    def log_dict(self, payload: Mapping[str, float], step: int | None = None) -> None:
        self.logger.log_metrics(dict(payload), step=step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.logger.log_hyperparams(dict(config))

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                  step: int | None = None) -> None:
        table = getattr(self.logger, "log_table", None)
        if callable(table):
            table(key=name, columns=list(columns), data=[list(r) for r in rows], step=step)

    def close(self) -> None:
        self.logger.finalize("success")


def metric_loggers(loggers: Iterable[Any]) -> list[MetricLogger]:
    """Each logger as a MetricLogger: one that already is one is kept, a Lightning logger is adapted."""
    return [lg if isinstance(lg, MetricLogger) else LightningMetricLogger(lg) for lg in loggers]
