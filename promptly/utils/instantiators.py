"""Instantiate the `callbacks` and `logger` groups (dicts of `_target_` nodes), as in
lightning-hydra-template; plus the class-set helper FSDP's wrap policy needs from YAML."""

from __future__ import annotations

import importlib
import logging

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from promptly.errors import ConfigError

log = logging.getLogger(__name__)


def _nodes(cfg: DictConfig | None, group: str) -> list[tuple[str, DictConfig]]:
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"`{group}` must be a mapping of name -> {{_target_: ...}}")
    return [(str(name), node) for name, node in cfg.items() if isinstance(node, DictConfig) and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    callbacks = []
    for name, node in _nodes(cfg, "callbacks"):
        log.debug("callback %s: %s", name, node._target_)
        callbacks.append(instantiate(node))
    return callbacks


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    loggers = []
    for name, node in _nodes(cfg, "logger"):
        log.debug("logger %s: %s", name, node._target_)
        loggers.append(instantiate(node))
    return loggers


def layer_classes(names: list[str]) -> set[type]:
    """The transformers classes with these names (for FSDP's auto_wrap_policy); unknown names skipped."""
    found: set[type] = set()
    for name in names:
        for module in ("transformers.models.llama.modeling_llama", "transformers.models.qwen2.modeling_qwen2",
                       "transformers.models.qwen3.modeling_qwen3", "transformers.models.mistral.modeling_mistral",
                       "transformers.models.gemma2.modeling_gemma2"):
            try:
                cls = getattr(importlib.import_module(module), name, None)
            except ImportError:
                continue
            if cls is not None:
                found.add(cls)
                break
    if not found:
        raise ConfigError(f"none of {names} is a transformers decoder-layer class")
    return found
