"""task_wrapper: the one shape every verb that makes a run folder runs in.

Each run leaves a redacted config.yaml (and redacted copies of Hydra's .hydra/ files) and a result.json;
its loggers (W&B) are closed whatever happens; a failure is logged, recorded (and, with PROMPTLY_NOTIFY=failure,
sent to the configured webhooks) before it propagates, so Hydra marks that job failed and a multirun goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from promptly.errors import ConfigError
from promptly.utils.naming import run_identity
from promptly.utils.redact import redact_run_files, redact_text, redacted_container
from promptly.utils.results import RunResult, write_result

log = logging.getLogger(__name__)

TaskOutput = tuple[dict[str, float], dict[str, Any]]
"""What a verb's task returns: numbers for result.json and sweepers, and the objects it made (tests,
benchmarks and the entry point read them; `exit_code` there sets the command's exit status)."""

Task = Callable[[DictConfig], TaskOutput]


class JobFailed(RuntimeError):
    """A sweep job's failure, re-raised as an error Hydra records against that job.

    Entry points turn user errors into SystemExit for a clean message; inside a multirun that would
    end the whole sweep, so there the original error travels wrapped in this.
    """


def save_config(cfg: DictConfig, output_dir: Path) -> Path:
    """<run>/config.yaml: the composed, resolved config without secrets; Hydra's own copies under
    .hydra/ are redacted in place (a URL with a password given on the command line ends up there)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    redact_run_files(output_dir / ".hydra")
    path = output_dir / "config.yaml"
    path.write_text(yaml.safe_dump(redacted_container(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def close_wandb(failed: bool) -> None:
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The optimised metric for sweepers; a missing one is an error naming the ones that exist."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
    return float(metrics[name])


def task_wrapper(task: Task) -> Task:
    """Run `task` as one job: redacted config first, result.json and closed loggers last."""

    @wraps(task)
    def wrapped(cfg: DictConfig) -> TaskOutput:
        output_dir = Path(cfg.paths.output_dir)
        ident = run_identity()
        save_config(cfg, output_dir)
        started = time.perf_counter()
        result = RunResult(status="failed", task_name=str(cfg.get("task_name", "train")),
                           experiment=ident.experiment, overrides=ident.overrides,
                           optimized_metric=cfg.get("optimized_metric"), output_dir=str(output_dir),
                           job_num=ident.job_num)
        try:
            metrics, objects = task(cfg)
        except BaseException as err:
            if isinstance(err, SystemExit) and not err.code:
                raise
            log.error("run failed: %s", output_dir, exc_info=not _is_user_error(err))
            result.error = redact_text(f"{type(err).__name__}: {err}")[:2000]
            result.duration_s = time.perf_counter() - started
            write_result(output_dir, result)
            close_wandb(failed=True)
            notify_failure(f"{result.task_name} {ident.name}", err, output_dir)
            if ident.multirun and not isinstance(err, KeyboardInterrupt):
                raise JobFailed(f"job {ident.job_num} failed: {result.error}") from err
            raise
        result.status = "ok" if not objects.get("exit_code") else "failed"
        result.metrics = metrics
        result.duration_s = time.perf_counter() - started
        result.best_model_path = objects.get("best_model_path")
        result.resolved = dict(objects.get("resolved") or {})
        try:
            result.value = metric_value(metrics, result.optimized_metric)
            objects["value"] = result.value
        finally:
            write_result(output_dir, result)
            close_wandb(failed=result.status != "ok")
        log.info("run finished in %.1fs: %s", result.duration_s, output_dir)
        return metrics, objects

    return wrapped


def notify_failure(title: str, err: BaseException, output_dir: Path) -> None:
    """With PROMPTLY_NOTIFY=failure, report the failure (promptly.notify) unless a callback already did."""
    from promptly.notify.jobs import failures_enabled
    from promptly.notify.jobs import notify_failure as send

    if failures_enabled():
        send(title, err, output_dir)


def _is_user_error(err: BaseException) -> bool:
    from promptly.errors import PromptlyError

    return isinstance(err, PromptlyError)
