"""Where the config tree lives, and the decorator that turns a function into a Hydra entry point."""

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

import promptly.utils.schemas  # noqa: F401  (registers the config schemas before any verb composes)

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent


def config_dir() -> Path:
    """`configs/` of the checkout (the README installs promptly editable), or PROMPTLY_CONFIG_DIR."""
    override = os.environ.get("PROMPTLY_CONFIG_DIR")
    path = Path(override) if override else PROJECT_ROOT / "configs"
    if not path.is_dir():
        raise FileNotFoundError(
            f"promptly's config tree was not found at {path}: install promptly from its repository "
            "(`pip install -e .`) or set PROMPTLY_CONFIG_DIR"
        )
    return path


USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError)
"""Errors whose message tells the user what to fix: printed without a traceback."""


def report_user_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Print a user error (bad setting, unreachable store) as one red line and exit 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        from promptly.store.base import StoreError

        caught: tuple[type[BaseException], ...] = (StoreError, *USER_ERRORS)
        try:
            return fn(cfg)
        except caught as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or _is_multirun():
                raise  # in a multirun the launcher records the failed job and the others go on
            Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}")
            raise SystemExit(1) from None

    return wrapper


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """`@hydra.main` on promptly's config tree, so every verb takes overrides, `-m`, `--cfg job` etc."""
    main = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    return lambda fn: main(report_user_errors(fn))
