"""ModelFactory: what `model=...` instantiates. Cheap to build (nothing is loaded until asked), so
composing or instantiating any model config touches neither the Hub nor the disk."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from promptly.errors import ConfigError
from promptly.model.config import PeftConfig, PeftMethod, TinyConfig
from promptly.model.packaged import PackagedModelConfig, converted_folder, origin_text
from promptly.model.peft import apply_peft, peft_config, quantization_config
from promptly.model.tiny import load_tiny_tokenizer, tiny_model_config

log = logging.getLogger(__name__)

TINY = "tiny"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


class ModelFactory:
    """Tokenizer and model (with PEFT applied) for one `model` config."""

    def __init__(
        self,
        name_or_path: str = TINY,
        peft: PeftConfig | Mapping[str, Any] | None = None,
        tiny: TinyConfig | Mapping[str, Any] | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = "sdpa",
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        context_length: int | None = None,
        packaged: PackagedModelConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.name_or_path = name_or_path
        self.peft = peft_config(_plain(peft))
        if self.is_tiny:
            self.tiny = tiny if isinstance(tiny, TinyConfig) else TinyConfig(**(_plain(tiny) or {}))
        elif tiny is not None:
            raise ConfigError(f"model.tiny is set but model.name_or_path={name_or_path!r} is not `tiny`")
        if packaged is not None and self.is_tiny:
            raise ConfigError("model.packaged and name_or_path=tiny exclude each other")
        self.packaged = (packaged if isinstance(packaged, PackagedModelConfig) or packaged is None
                         else PackagedModelConfig(**_plain(packaged)))
        if dtype != "auto" and dtype not in DTYPES:
            raise ConfigError(f"model.dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
        self.revision, self.dtype_name = revision, dtype
        self.attn_implementation = attn_implementation
        self.gradient_checkpointing, self.trust_remote_code = gradient_checkpointing, trust_remote_code
        self._context_length = context_length

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path == TINY

    @property
    def load_path(self) -> str:
        """Where weights and tokenizer are read: the converted folder of a packaged model, else the name."""
        if self.packaged is not None:
            return str(converted_folder(self.name_or_path, self.packaged))
        return self.name_or_path

    @property
    def loadable_by_name(self) -> bool:
        """Whether `from_pretrained(name_or_path)` elsewhere gives these exact base weights."""
        return not self.is_tiny and self.packaged is None

    @property
    def origin(self) -> str:
        """The base model's true origin, for reports, model cards and `promptly ask`."""
        if self.is_tiny:
            return "tiny: a small Llama built locally (random init, seeded), tokenizer trained on the sample corpus"
        if self.packaged is not None:
            return origin_text(self.name_or_path, self.packaged)
        return self.name_or_path + (f"@{self.revision}" if self.revision else "")

    @property
    def adapter_only(self) -> bool:
        """Checkpoints and exports hold the adapters only."""
        return self.peft.method != PeftMethod.full

    def load_tokenizer(self) -> Any:
        if self.is_tiny:
            tok = load_tiny_tokenizer(self.tiny)
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.load_path, revision=self.revision,
                                                trust_remote_code=self.trust_remote_code)
        if tok.pad_token_id is None:  # labels mask padding by position, so eos doubles safely as pad
            tok.pad_token = tok.eos_token
        tok.padding_side = "right"
        return tok

    @cached_property
    def hf_config(self) -> Any:
        if self.is_tiny:
            return tiny_model_config(self.tiny, self.load_tokenizer())
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.load_path, revision=self.revision,
                                          trust_remote_code=self.trust_remote_code)

    @property
    def context_length(self) -> int:
        """The longest sequence trained on: model.context_length, capped by the model's positions."""
        native = int(getattr(self.hf_config, "max_position_embeddings", 0) or 0)
        chosen = [n for n in (self._context_length, native) if n]
        if not chosen:
            raise ConfigError("the model's context length is unknown: set model.context_length")
        return min(chosen)

    def torch_dtype(self) -> torch.dtype:
        if self.dtype_name != "auto":
            return DTYPES[self.dtype_name]
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        # Frozen base weights can live in bf16; fully trained weights stay fp32 under mixed precision.
        return torch.bfloat16 if bf16 and self.adapter_only else torch.float32

    def build(self, with_peft: bool = True) -> Any:
        """The model with PEFT applied (unless `with_peft` is off: the bare base), in train mode."""
        if self.is_tiny:
            from transformers import LlamaForCausalLM

            cfg = self.hf_config
            cfg._attn_implementation = self.attn_implementation or "sdpa"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.tiny.init_seed)
                model: Any = LlamaForCausalLM(cfg)
                model = model.to(dtype=self.torch_dtype())
        else:
            from transformers import AutoModelForCausalLM

            kwargs: dict[str, Any] = {"revision": self.revision, "dtype": self.torch_dtype(),
                                      "trust_remote_code": self.trust_remote_code}
            if self.attn_implementation:
                kwargs["attn_implementation"] = self.attn_implementation
            if self.peft.method == PeftMethod.qlora:
                kwargs["quantization_config"] = quantization_config()
            model = AutoModelForCausalLM.from_pretrained(self.load_path, **kwargs)
        model.config.use_cache = False
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if self.adapter_only:
                model.enable_input_require_grads()
        if with_peft:
            model = apply_peft(model, self.peft, self.gradient_checkpointing)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("model %s: %s parameters, %s trainable (%s)", self.name_or_path, f"{total:,}", f"{trainable:,}",
                 self.peft.method.value)
        model.train()
        return model
