"""Typed schema of the `model` and `model/peft` config groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from promptly.errors import ConfigError
from promptly.model.packaged import PackagedModelConfig


class PeftMethod(StrEnum):
    """Which parameters are trained."""

    lora = "lora"
    """Low-rank adapters on target_modules; checkpoints hold the adapters only."""
    qlora = "qlora"
    """LoRA over a 4-bit (NF4) base model: needs bitsandbytes and a CUDA GPU."""
    full = "full"
    """Every parameter (full fine-tuning)."""


@dataclass
class PeftConfig:
    """The `model/peft` group; the LoRA fields must be null for `full`."""

    method: PeftMethod = PeftMethod.lora
    r: int | None = 16
    """LoRA rank."""
    alpha: int | None = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float | None = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names to adapt; ["all-linear"] adapts every linear layer but the head."""
    modules_to_save: list[str] | None = None
    """Modules trained in full and saved beside the adapters (e.g. [lm_head])."""


@dataclass
class TinyConfig:
    """A small Llama-style model built locally, with a byte-level BPE trained on the sample corpus."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    corpus_dir: str = "sample_data"
    """Text the tokenizer is trained on (every .md/.txt/.html/.jsonl file under it, sorted)."""
    cache_dir: str = ".promptly/tiny"
    """Where the trained tokenizer is cached, keyed by a hash of the corpus and the settings."""
    init_seed: int = 0
    """Seed of the initial weights (independent of the run's seed, so adapters always fit the base)."""


@dataclass
class ModelConfig:
    """The `model` group: ModelFactory's arguments."""

    _target_: str = "promptly.model.factory.ModelFactory"
    name_or_path: str = "tiny"
    """A Hugging Face model id, a local directory, or `tiny` (built from `tiny`)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit)."""
    dtype: str = "auto"
    """Weights dtype: auto (bf16 on GPUs that have it, else float32), float32, bfloat16 or float16."""
    attn_implementation: str | None = "sdpa"
    """eager, sdpa, flash_attention_2 (packed rows then need no mask), or null for the model's default."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, about 30% more compute."""
    trust_remote_code: bool = False
    """Allow model code from the Hub (off: only architectures transformers ships)."""
    context_length: int | None = None
    """Longest sequence the model is trained on (null: its max_position_embeddings)."""
    tiny: TinyConfig | None = None
    """Settings of the locally built model (only with name_or_path=tiny)."""
    packaged: PackagedModelConfig | None = None
    """Read the weights from a GGUF file shipped in a pip package (name_or_path then names its origin)."""
    peft: PeftConfig = field(default_factory=PeftConfig)


@dataclass
class SamplingConfig:
    """How answers are generated: greedy by default, so a report can be reproduced."""

    batch_size: int = 16
    """Prompts generated together (left-padded); 1 is one-at-a-time."""
    max_new_tokens: int = 64
    """Longest answer, in tokens."""
    do_sample: bool = False
    """Sample instead of greedy decoding."""
    temperature: float = 0.7
    """Sampling temperature (only with do_sample)."""
    top_p: float = 0.95
    """Nucleus sampling mass (only with do_sample)."""
    seed: int = 0
    """Seeds sampling."""
    repetition_penalty: float = 1.0
    """Above 1 discourages repeating tokens (small models loop without it); 1 leaves logits unchanged."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("generation.batch_size and generation.max_new_tokens must be at least 1")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ConfigError("sampling needs generation.temperature > 0 and 0 < generation.top_p <= 1")
        if self.repetition_penalty <= 0:
            raise ConfigError("generation.repetition_penalty must be positive (1 disables it)")


@dataclass
class ModuleConfig:
    """`module` (configs/module): the Lightning module's own settings (promptly.model.module.RagLitModule)."""

    _target_: str = "promptly.model.module.RagLitModule"
    samples: int = 4
    """Validation questions answered greedily at each validation end (0: none)."""
    max_new_tokens: int = 64
    """Tokens per greedy answer."""
    scheduler_interval: str = "step"
    """The scheduler steps per optimizer step (step) or per epoch (epoch)."""
    compile: bool = False
    """torch.compile each decoder layer for training (validation stays eager); off by default: on this CPU the
    first run's compile (~3 min) is paid back only after ~50 SmolLM2 steps (benchmarks/README.md)."""
