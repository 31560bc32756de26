"""Models for answering, from wherever they live: a training run folder (its best checkpoint and the
settings it was trained with), an exported folder (`<run>/model`, a registry version), or a base model
option. `promptly eval`, `promptly ask`, the server and the bias probes all load through `load_model`.

LoRA adapters are merged into the base after loading: inference then costs what the base costs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from promptly.data.config import PromptConfig
from promptly.data.prompts import prompt_config
from promptly.errors import ConfigError, InputNotFoundError, ModelLoadError
from promptly.model.factory import ModelFactory
from promptly.utils.concurrency import MODEL_LOADS
from promptly.utils.hardware import apply_threads, detect_hardware

log = logging.getLogger(__name__)

EXPORT_META = "promptly.json"
LATEST = "latest"


@dataclass
class LoadedModel:
    """A model ready to answer (eval mode), with what prompts and reports need to know about it."""

    model: Any
    tokenizer: Any
    name: str
    """What reports, citations and the server call it: the run folder's name, or the base model's."""
    origin: str
    """The base model's true origin (e.g. a dequantized GGUF from a package)."""
    checkpoint: str | None
    """The weights loaded on top of the base (a checkpoint or an exported folder), None for a base model."""
    prompt: PromptConfig
    """The prompt the model was trained with (the configured one for a base model)."""
    max_length: int
    """Longest prompt + answer, in tokens."""
    run_dir: str | None = None


def latest_train_run(log_dir: str | Path) -> Path:
    """The newest `promptly train` run folder (single runs and multirun jobs) that has a checkpoint."""
    runs = [p.parent.parent for p in Path(log_dir, "train").glob("**/checkpoints/*.ckpt")]
    if not runs:
        raise InputNotFoundError(f"run_dir=latest: no training run with a checkpoint under {log_dir}/train "
                                 "(train one with `promptly train`, or choose model=... for a base model)")
    return max(runs, key=lambda p: p.stat().st_mtime)


def resolve_run_dir(value: str | Path, log_dir: str | Path) -> Path:
    path = latest_train_run(log_dir) if str(value) == LATEST else Path(value).expanduser()
    if not (path / "config.yaml").is_file():
        raise InputNotFoundError(f"run_dir={value} has no config.yaml: is it a `promptly train` run folder?")
    return path


def run_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint, else its last one."""
    ckpts = run_dir / "checkpoints"
    best = sorted(p for p in ckpts.glob("*.ckpt") if p.name != "last.ckpt")
    chosen = best[-1] if best else ckpts / "last.ckpt"
    if not chosen.is_file():
        raise InputNotFoundError(f"run_dir={run_dir} has no checkpoint under checkpoints/")
    return chosen


def run_config(run_dir: Path) -> DictConfig:
    """The run's saved (resolved, redacted) config."""
    return OmegaConf.create(dict(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))))


def load_checkpoint_weights(net: Any, ckpt: str | Path, adapter_only: bool) -> None:
    """A Lightning checkpoint of RagLitModule (`net.`-prefixed keys) into a built network."""
    try:
        state = torch.load(str(ckpt), map_location="cpu", weights_only=False)["state_dict"]
        weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        net.load_state_dict(weights, strict=not adapter_only)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise ModelLoadError(f"checkpoint {ckpt} does not fit this model: {first}. Load it with the settings it "
                             "was trained with (run_dir=<its run folder>).") from None


def native_bf16() -> bool:
    """Whether this machine multiplies bfloat16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or
    AMX (there oneDNN runs bf16 matmuls several times faster than float32)."""
    return detect_hardware().bf16


def inference_dtype(choice: str) -> torch.dtype:
    """`auto`: bfloat16 where it is native (see native_bf16), else float32."""
    if choice == "auto":
        return torch.bfloat16 if native_bf16() else torch.float32
    if choice not in ("float32", "bfloat16"):
        raise ConfigError(f"inference_dtype must be auto, float32 or bfloat16, got {choice!r}")
    return torch.bfloat16 if choice == "bfloat16" else torch.float32


def _ready(model: Any, dtype: torch.dtype | None = None) -> Any:
    """Adapters merged, eval mode, cache on, weights in the inference dtype: the network as inference wants it."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.config.use_cache = True
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def _max_length(factory: ModelFactory, data_max_length: int | None) -> int:
    return min(n for n in (data_max_length, factory.context_length) if n)


def load_base(factory: ModelFactory, prompt: PromptConfig, max_length: int | None,
              dtype: torch.dtype | None = None) -> LoadedModel:
    """A base model option as it is, without adapters."""
    return LoadedModel(model=_ready(factory.build(with_peft=False), dtype), tokenizer=factory.load_tokenizer(),
                       name=factory.name_or_path, origin=factory.origin, checkpoint=None, prompt=prompt,
                       max_length=_max_length(factory, max_length))


def load_checkpoint(factory: ModelFactory, ckpt: str | Path, prompt: PromptConfig, max_length: int | None,
                    name: str | None = None, run_dir: str | None = None,
                    dtype: torch.dtype | None = None) -> LoadedModel:
    """A base model option with a training checkpoint's weights on top."""
    if not Path(ckpt).is_file():
        raise InputNotFoundError(f"ckpt_path={ckpt} does not exist")
    net = factory.build()
    load_checkpoint_weights(net, ckpt, factory.adapter_only)
    return LoadedModel(model=_ready(net, dtype), tokenizer=factory.load_tokenizer(), name=name or Path(ckpt).stem,
                       origin=factory.origin, checkpoint=str(ckpt), prompt=prompt,
                       max_length=_max_length(factory, max_length), run_dir=run_dir)


def load_run(run_dir: str | Path, log_dir: str | Path, ckpt: str | Path | None = None,
             dtype: torch.dtype | None = None) -> LoadedModel:
    """A training run's best (or given) checkpoint with the model, prompt and length it was trained with."""
    folder = resolve_run_dir(run_dir, log_dir)
    saved = run_config(folder)
    factory: ModelFactory = instantiate(saved.model)
    data = saved.get("data") or {}
    return load_checkpoint(factory, ckpt or run_checkpoint(folder), prompt_config(data.get("prompt")),
                           data.get("max_length"), name=run_name(folder), run_dir=str(folder), dtype=dtype)


def run_name(folder: Path) -> str:
    """`<experiment> run <folder>` (the experiment from the run's result.json), else the folder's name."""
    result = folder / "result.json"
    experiment = json.loads(result.read_text(encoding="utf-8")).get("experiment") if result.is_file() else None
    return f"{experiment} run {folder.name}" if experiment and experiment != "default" else folder.name


def load_export(folder: str | Path, prompt: PromptConfig, max_length: int | None,
                dtype: torch.dtype | None = None) -> LoadedModel:
    """An exported folder (`<run>/model`, a registry version): full weights, or adapters on their base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder).expanduser()
    meta_path = path / EXPORT_META
    if not meta_path.is_file():
        raise InputNotFoundError(f"model_dir={folder} has no {EXPORT_META}: is it a promptly export?")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any
    if meta.get("adapter_only"):
        from peft import PeftModel

        if meta.get("tiny"):
            base = ModelFactory("tiny", tiny=meta["tiny"]).build(with_peft=False)
        else:
            base = AutoModelForCausalLM.from_pretrained(meta.get("base_path") or meta["base_model"], dtype="float32")
        model = PeftModel.from_pretrained(base, str(path))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32")
    context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    length = min(n for n in (max_length, context) if n)
    return LoadedModel(model=_ready(model, dtype), tokenizer=tokenizer, name=path.parent.name if path.name == "model"
                       else path.name, origin=str(meta.get("base_origin") or meta.get("base_model")),
                       checkpoint=str(path), prompt=prompt, max_length=length)


def _plain(node: Any) -> dict[str, Any]:
    return dict(OmegaConf.to_container(node, resolve=True, enum_to_str=True))  # type: ignore[arg-type]


TRAINED_DATA_KEYS = ("retrieval", "prompt", "max_length")
"""The data settings answering must repeat from training: what is retrieved, the prompt, the length."""


def trained_data_settings(data: Any) -> dict[str, Any]:
    """The data settings a model was trained with, as an export's promptly.json records them."""
    plain: Any = (OmegaConf.to_container(data, resolve=True, enum_to_str=True) if isinstance(data, DictConfig)
                  else dict(data or {}))
    return {key: plain[key] for key in TRAINED_DATA_KEYS if key in plain}


def data_override_keys(overrides: Sequence[str]) -> list[str]:
    """The `data.*` keys set on the command line (`data.retrieval.k=5`, `+data.x=1`, `++data.x=1`)."""
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+")
        if "=" in override and key.startswith("data.") and "@" not in key:
            keys.append(key)
    return keys


def adopt_model_data(cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The data settings the chosen model was trained with, so eval, ask, serve and the bias probes show it
    what it learned on: with run_dir, the run's saved `data` block (and `latest` resolved); with model_dir,
    the settings its promptly.json records. A `data.*` key given in `overrides` (the command line's) still
    wins, and each one that changes the model's value is reported."""
    source, adopted = _trained_data(cfg)
    if adopted is None:
        return cfg
    explicit = {key: OmegaConf.select(cfg, key, default=None) for key in data_override_keys(overrides)}
    with open_dict(cfg):
        cfg.data = adopted
        cfg.data.cache_dir = None  # never write into the training run's data cache
        for key, value in explicit.items():
            trained = OmegaConf.select(cfg, key, default=None)
            OmegaConf.update(cfg, key, value, force_add=True)
            if trained != value:
                log.warning("%s=%s (given on the command line) replaces the %s's %s", key, value, source, trained)
    return cfg


def _trained_data(cfg: DictConfig) -> tuple[str, DictConfig | None]:
    if cfg.get("run_dir"):
        folder = resolve_run_dir(cfg.run_dir, cfg.paths.log_dir)
        with open_dict(cfg):
            cfg.run_dir = str(folder)
        saved = run_config(folder)
        return f"run {folder.name}", (saved.data if "data" in saved else None)
    if cfg.get("model_dir"):
        meta_path = Path(str(cfg.model_dir)).expanduser() / EXPORT_META
        recorded = json.loads(meta_path.read_text(encoding="utf-8")).get("data") if meta_path.is_file() else None
        if not recorded:
            return "export", None  # an export from before promptly.json recorded them: the configured ones
        merged = OmegaConf.merge(cfg.data, recorded) if cfg.get("data") is not None else OmegaConf.create(recorded)
        return f"export {Path(str(cfg.model_dir)).name}", merged  # type: ignore[return-value]
    return "", None


def load_model(cfg: DictConfig) -> LoadedModel:
    """What a verb's config asks for: `run_dir` (a run folder or `latest`), `model_dir` (an export),
    `ckpt_path` with `model`, or `model` alone (a base model). `data.prompt`/`data.max_length` apply
    to base models and exports; a run brings its own."""
    data: Any = cfg.get("data") or {}
    prompt = prompt_config(_plain(data.prompt) if data.get("prompt") else None)
    max_length = data.get("max_length")
    chosen = [k for k in ("run_dir", "model_dir") if cfg.get(k)]
    if len(chosen) > 1:
        raise ConfigError("choose one of run_dir=... and model_dir=...")
    dtype = inference_dtype(str(cfg.get("inference_dtype") or "auto"))
    apply_threads()  # more compute threads than free cores stall generation on a shared machine
    with MODEL_LOADS:  # one load at a time in a process (promptly/utils/concurrency.py)
        if cfg.get("run_dir"):
            return load_run(cfg.run_dir, cfg.paths.log_dir, cfg.get("ckpt_path"), dtype)
        if cfg.get("model_dir"):
            return load_export(cfg.model_dir, prompt, max_length, dtype)
        if cfg.get("model") is None:
            raise ConfigError("no model chosen: run_dir=<train run folder or latest>, model_dir=<exported folder>, "
                              "or model=<option> (e.g. model=smollm2_135m_instruct)")
        factory: ModelFactory = instantiate(cfg.model)
        if cfg.get("ckpt_path"):
            return load_checkpoint(factory, cfg.ckpt_path, prompt, max_length, dtype=dtype)
        return load_base(factory, prompt, max_length, dtype)
