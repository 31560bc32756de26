"""Which parameters train: LoRA adapters, QLoRA (4-bit base), or all of them."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import torch

from promptly.errors import ConfigError, ModelLoadError
from promptly.model.config import PeftConfig, PeftMethod

LORA_FIELDS = ("r", "alpha", "dropout", "target_modules")


def peft_config(value: PeftConfig | Mapping[str, Any] | None) -> PeftConfig:
    """Validate a `model.peft` node: LoRA fields required for lora/qlora, absent for full."""
    if isinstance(value, PeftConfig):
        cfg = value
    else:
        fields = dict(value or {})
        fields["method"] = PeftMethod(fields.get("method", "lora"))
        if fields.get("target_modules") is not None:
            fields["target_modules"] = list(fields["target_modules"])
        if fields.get("modules_to_save") is not None:
            fields["modules_to_save"] = list(fields["modules_to_save"])
        cfg = PeftConfig(**fields)
    if cfg.method == PeftMethod.full:
        stray = [f for f in (*LORA_FIELDS, "modules_to_save") if getattr(cfg, f) is not None]
        if stray:
            raise ConfigError(f"model.peft.method=full trains every parameter, but model.peft.{stray[0]} is set: "
                             "LoRA options only apply to model/peft=lora or qlora")
    else:
        missing = [f for f in LORA_FIELDS if getattr(cfg, f) is None]
        if missing:
            raise ConfigError(f"model.peft.method={cfg.method.value} needs model.peft.{missing[0]}")
        assert cfg.r is not None and cfg.alpha is not None and cfg.dropout is not None
        if cfg.r < 1 or cfg.alpha <= 0 or not 0 <= cfg.dropout < 1:
            raise ConfigError(f"invalid LoRA settings: r={cfg.r}, alpha={cfg.alpha}, dropout={cfg.dropout}")
    return cfg


def quantization_config() -> Any:
    """NF4 4-bit weights with bf16 compute, or a clear error where QLoRA cannot run."""
    if not torch.cuda.is_available():
        raise ModelLoadError("model/peft=qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); "
                           "use model/peft=lora on this machine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError("model/peft=qlora needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def apply_peft(model: Any, cfg: PeftConfig, gradient_checkpointing: bool = False) -> Any:
    """The model ready to train: adapters injected (lora/qlora) or every parameter trainable (full)."""
    if cfg.method == PeftMethod.full:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == PeftMethod.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    target: Any = cfg.target_modules
    if target == ["all-linear"]:
        target = "all-linear"
    assert cfg.r is not None and cfg.alpha is not None and cfg.dropout is not None  # peft_config checked
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=target,
                      modules_to_save=cfg.modules_to_save, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)
