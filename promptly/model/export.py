"""The trained model in Hugging Face format (adapters for LoRA, full weights otherwise) + tokenizer,
which is what `promptly eval` and `promptly publish` load."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from promptly.model.module import RagLitModule

log = logging.getLogger(__name__)


def load_weights(module: RagLitModule, ckpt_path: str) -> None:
    """Load a Lightning checkpoint's weights into a built module (partial for adapter-only ones)."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state, strict=not module.factory.adapter_only)


def export_model(module: RagLitModule, out_dir: Path, ckpt_path: str | None = None,
                 data: dict[str, Any] | None = None) -> Path:
    """Save weights (from ckpt_path if given, else as they are) and tokenizer under out_dir; `data`: the
    data settings it was trained with (trained_data_settings), which loading it applies again."""
    assert module.net is not None
    if ckpt_path:
        load_weights(module, ckpt_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    module.net.save_pretrained(str(out_dir))  # type: ignore[operator]
    module.tokenizer.save_pretrained(str(out_dir))
    factory = module.factory
    meta: dict[str, Any] = {"base_model": factory.name_or_path, "revision": factory.revision,
                            "peft": factory.peft.method.value, "adapter_only": factory.adapter_only,
                            "checkpoint": ckpt_path, "base_origin": factory.origin,
                            "base_loadable_by_name": factory.loadable_by_name}
    if factory.is_tiny:
        meta["tiny"] = asdict(factory.tiny)
    if factory.packaged is not None:  # the adapters' base is the converted package folder, not the Hub name
        meta["base_path"] = factory.load_path
    if data:
        meta["data"] = data
    (out_dir / "promptly.json").write_text(json.dumps(meta, indent=2))
    log.info("exported the model to %s", out_dir)
    return out_dir
