"""Where the config tree lives, and the decorator that turns a verb's task into a Hydra entry point.

Every verb has the same shape: `@hydra_entry("<verb>")` on a task `cfg -> (metrics, objects)`. A verb
that makes a run folder runs under `task_wrapper` (redacted config, result.json, loggers closed); user
errors (promptly.errors.PromptlyError) print as one line, anything else keeps its traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

import promptly.verbs.schemas  # noqa: F401  (registers the config schemas before any verb composes)
from promptly.errors import InputNotFoundError, PromptlyError
from promptly.utils.redact import redact_text
from promptly.verbs.task_wrapper import Task, task_wrapper

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CLI_RAISES_ENV = "PROMPTLY_CLI_RAISES"
"""Set by `promptly` (verbs/cli.py) while it runs an entry with HYDRA_FULL_ERROR=1 only to explain config
errors itself: a user error inside the task is still printed here as one line, never re-raised (Hydra
would print the job's overrides, secrets included)."""
PROJECT_ROOT = PACKAGE_ROOT.parent


def config_dir() -> Path:
    """The config tree: PROMPTLY_CONFIG_DIR, else the package's `_configs`. In a checkout that is a
    symlink to the top-level `configs/` (so editing configs needs no reinstall); in a wheel it holds
    the copied files, so an installed promptly composes from any folder."""
    override = os.environ.get("PROMPTLY_CONFIG_DIR")
    path = Path(override) if override else PACKAGE_ROOT / "_configs"
    if not path.is_dir():
        raise InputNotFoundError(
            f"promptly's config tree was not found at {path}: reinstall promptly (its wheel ships the configs) "
            "or set PROMPTLY_CONFIG_DIR"
        )
    return path


def report_user_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Print a user error (bad setting, unreachable store) as one red line and exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return fn(cfg)
        except PromptlyError as err:
            user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1" and not os.environ.get(CLI_RAISES_ENV)
            if user_wants_traceback or _is_multirun():
                raise  # in a multirun the launcher records the failed job and the others go on
            Console(stderr=True).print(f"[bold red]error:[/] {escape(redact_text(str(err)))}")
            raise SystemExit(1) from None

    return wrapper


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def task_overrides() -> list[str]:
    """The overrides of this command line (what the user typed), empty outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def hydra_entry(config_name: str, run_folder: bool = True) -> Callable[[Task], Callable[[], Any]]:
    """`@hydra.main` on promptly's config tree for a verb's task, so every verb takes overrides, `-m`,
    `--cfg job` etc. With `run_folder` the task runs under `task_wrapper`. The entry returns the
    optimised metric (for sweepers) and exits with the task's `exit_code`, if it set one."""

    def decorate(task: Task) -> Callable[[], Any]:
        job = task_wrapper(task) if run_folder else task

        def entry(cfg: DictConfig) -> float | None:
            _, objects = job(cfg)
            if objects.get("exit_code"):
                raise SystemExit(int(objects["exit_code"]))
            value = objects.get("value")
            return None if value is None else float(value)

        functools.update_wrapper(entry, task)  # Hydra names the job and finds the module through this
        main = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
        return main(report_user_errors(entry))

    return decorate
