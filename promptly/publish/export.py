"""The files of a version: the evaluated checkpoint exported in Hugging Face format, loadable without promptly.

Layouts (what `AutoModelForCausalLM.from_pretrained(<version>)` loads is always the repository root):
- `full`: a full fine-tune: config.json + model.safetensors.
- `adapter`: a LoRA whose base can be fetched by its Hub name: adapter_config.json names that base, so
  `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), <version>)` works (and transformers
  loads it directly when peft is installed).
- `merged`: the LoRA merged into its base (full weights); the adapter is kept in adapter/ only when its
  base can be fetched by name. Chosen on request (publish.merge), and always when the base cannot be
  fetched (the tiny model is built locally; a packaged base was converted locally), since an adapter on a
  base nobody can load is of no use.
Every layout carries the tokenizer and a generation_config.json (greedy, the run's answer length).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from promptly.errors import ConfigError, InputNotFoundError, ModelLoadError
from promptly.model.loading import load_checkpoint_weights, trained_data_settings

log = logging.getLogger(__name__)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_DIR = "adapter"


@dataclass(frozen=True)
class ExportedModel:
    """What export_version wrote, for the card and the version record."""

    layout: str
    """full, adapter or merged (see the module docstring)."""
    meta: dict[str, Any]
    """The base's facts (run_meta): base_model, peft, adapter_only, base_origin, base_loadable_by_name..."""
    base_loadable_by_name: bool
    """Whether the base can be fetched from the Hub by its name (so an adapter alone is usable)."""


def run_meta(factory: Any) -> dict[str, Any]:
    """What a loader needs to know about the base: its name, true origin, and whether the name loads it."""
    meta: dict[str, Any] = {"base_model": factory.name_or_path, "revision": factory.revision,
                            "peft": factory.peft.method.value, "adapter_only": factory.adapter_only,
                            "base_origin": factory.origin, "base_loadable_by_name": factory.loadable_by_name}
    if factory.load_path != factory.name_or_path:
        meta["base_path"] = factory.load_path
    if factory.is_tiny:
        meta["tiny"] = asdict(factory.tiny)
    return meta


def export_version(run_cfg: DictConfig, checkpoint: str, out_dir: Path, merge: bool) -> ExportedModel:
    """Write the version's model files into out_dir (which must not exist yet): the run's model settings
    with the evaluated checkpoint's weights, loaded as every verb loads them (promptly.model.loading)."""
    if not Path(checkpoint).is_file():
        raise InputNotFoundError(f"the evaluated checkpoint {checkpoint} does not exist: evaluate the run again "
                                 "(`promptly eval run_dir=<run>`) so that its newest evaluation names one")
    factory = instantiate(run_cfg.model)
    net = factory.build()
    load_checkpoint_weights(net, checkpoint, factory.adapter_only)
    net.eval()
    tokenizer = factory.load_tokenizer()
    meta = run_meta(factory)
    if run_cfg.get("data") is not None:  # loading the version applies them (promptly.model.loading.adopt_model_data)
        meta["data"] = trained_data_settings(run_cfg.data)
    loadable = bool(meta["base_loadable_by_name"])
    max_new_tokens = OmegaConf.select(run_cfg, "module.max_new_tokens", default=None) or 64
    generation = _generation_config(tokenizer, int(max_new_tokens))
    out_dir.mkdir(parents=True)
    if not factory.adapter_only:
        layout = "full"
        _save_full(net, tokenizer, generation, out_dir)
    elif loadable and not merge:
        layout = "adapter"
        _save_adapter(net, out_dir, factory.name_or_path)
        tokenizer.save_pretrained(str(out_dir))
        generation.save_pretrained(str(out_dir))
    else:
        if meta["peft"] == "qlora":
            raise ConfigError("a QLoRA adapter cannot be merged into its 4-bit base: publish it with "
                              "publish.merge=false, on a base that can be fetched by name")
        layout = "merged"
        if loadable:
            _save_adapter(net, out_dir / ADAPTER_DIR, factory.name_or_path)
        _save_full(net.merge_and_unload(), tokenizer, generation, out_dir)
    log.info("exported %s (%s) to %s", checkpoint, layout, out_dir)
    return ExportedModel(layout=layout, meta=meta, base_loadable_by_name=loadable)


def _generation_config(tokenizer: Any, max_new_tokens: int) -> Any:
    """Greedy decoding that stops at the tokenizer's end of sequence, as promptly answers."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)


def _save_full(model: Any, tokenizer: Any, generation: Any, out_dir: Path) -> None:
    """Full weights as safetensors, with the KV cache on again for generation (training turns it off)."""
    model.config.use_cache = True
    model.generation_config = generation
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _save_adapter(net: Any, out_dir: Path, base_model: str) -> None:
    """The adapter files, naming the base by its Hub name rather than the folder it was loaded from."""
    staging = out_dir.parent / f".{out_dir.name}-adapter"
    net.save_pretrained(str(staging))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        if not (staging / name).is_file():
            raise ModelLoadError(f"the adapter export has no {name}: is this checkpoint a LoRA adapter?")
        shutil.move(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
