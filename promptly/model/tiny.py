"""The tiny local model: a byte-level BPE trained on the sample corpus and a small Llama config.

Nothing is downloaded. The tokenizer is cached under the state dir keyed by a hash of the corpus and
the settings; training it is deterministic (sorted files, one thread), so every machine builds the
same vocabulary from the same corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptly.errors import InputNotFoundError
from promptly.model.config import TinyConfig

TOKENIZER_VERSION = 1
CORPUS_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def corpus_files(corpus_dir: str) -> list[Path]:
    """Documents under corpus_dir, sorted (qa.jsonl is left out: it holds the test answers)."""
    root = Path(corpus_dir)
    if not root.is_dir():
        raise InputNotFoundError(
            f"model.tiny.corpus_dir={corpus_dir} does not exist: the tiny model's tokenizer is trained on a "
            "folder of documents (the sample corpus by default, paths.data_dir)"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
    if not files:
        raise InputNotFoundError(f"no {'/'.join(CORPUS_SUFFIXES)} files under model.tiny.corpus_dir={corpus_dir}")
    return files


def tokenizer_key(cfg: TinyConfig, files: list[Path]) -> str:
    h = hashlib.sha256(json.dumps({"v": TOKENIZER_VERSION, "vocab": cfg.vocab_size}).encode())
    root = Path(cfg.corpus_dir)
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def _texts(files: list[Path]) -> Iterator[str]:
    for f in files:
        yield f.read_text(encoding="utf-8", errors="replace")


def train_tokenizer(files: list[Path], vocab_size: int) -> Any:
    """A byte-level BPE (GPT-2 style: no unknown bytes) with <pad>, <s>, </s> and <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    previous = os.environ.get("RAYON_NUM_THREADS")
    os.environ["RAYON_NUM_THREADS"] = "1"  # tokenizers' parallel merge counting is not order-stable
    try:
        tok.train_from_iterator(_texts(files), trainer=trainer)
    finally:
        if previous is None:
            os.environ.pop("RAYON_NUM_THREADS", None)
        else:
            os.environ["RAYON_NUM_THREADS"] = previous
    return tok


def load_tiny_tokenizer(cfg: TinyConfig) -> Any:
    """The cached tokenizer for this corpus and vocabulary size, trained on first use."""
    from transformers import PreTrainedTokenizerFast

    files = corpus_files(cfg.corpus_dir)
    target = Path(cfg.cache_dir) / f"tokenizer-{tokenizer_key(cfg, files)}"
    if not (target / "tokenizer.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tok = train_tokenizer(files, cfg.vocab_size)
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                          eos_token="</s>", unk_token="<unk>", model_max_length=
                                          cfg.max_position_embeddings)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-tokenizer-"))
        wrapped.save_pretrained(tmp)
        try:
            tmp.replace(target)  # atomic: parallel jobs may race to build the same cache
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(target))


def tiny_model_config(cfg: TinyConfig, tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
    )
