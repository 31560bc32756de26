"""Where the config tree lives, and the decorator that turns a function into a Hydra entry point."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

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


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """`@hydra.main` on promptly's config tree, so every verb takes overrides, `-m`, `--cfg job` etc."""
    return hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
