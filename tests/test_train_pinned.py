"""Exact numbers, as torchtune's recipe tests pin them: the token ids of one encoded RAG example and the
first training losses of a tiny run on the CPU. A change to the tokenizer, the prompt, masking, the
model's initialisation, batching order or the loss moves them; if the change was meant, update the pins
(run this file with -s: it prints the new values).

The losses come from data=causal_lm (experiment=tiny_causal_lm) on the sample corpus's chunk text, which
retrieval does not influence, so a change to what is embedded or how the store searches leaves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptly.data.config import PromptConfig
from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.model.config import TinyConfig
from promptly.model.tiny import load_tiny_tokenizer
from promptly.verbs.train import train

from .test_train_common import FAST, SAMPLE_DATA, _wandb_offline, location, tiny_state, train_config  # noqa: F401
from .test_train_overfit import LossRecorder

QUESTION = "Which Rust version is required?"
CHUNK = {"document_id": "driftsync/install.md", "ordinal": 0,
         "content": "Building driftsync from source requires Rust 1.74 or newer."}
ANSWER = "Rust 1.74 or newer."

# <s> + system + "Context:" | [1] title + chunk | "Question: ... Answer:" | " Rust 1.74 or newer." + </s>
PREFIX = [1, 60, 298, 1912, 264, 265, 72, 420, 81, 345, 295, 224, 1055, 632, 1241, 663, 360, 1154, 489, 290, 623,
          279, 386, 926, 278, 365, 1011, 17, 202, 202, 38, 270, 1011, 29, 202]
CONTEXT = [62, 20, 64, 897, 18, 266, 1081, 17, 1202, 202, 37, 2037, 1006, 897, 583, 280, 1635, 1931, 407, 463, 487, 17,
           1989, 372, 709, 264, 17]
SUFFIX = [202, 202, 52, 88, 421, 287, 29, 1065, 737, 407, 463, 802, 329, 1362, 34, 202, 36, 81, 1833, 264, 29]
ANSWER_IDS = [407, 463, 487, 17, 1989, 372, 709, 264, 17, 2]

LOSSES = [7.67069, 7.54147, 7.30295, 7.1957]  # the first four optimizer steps
LOSS_TOLERANCE = 1e-3  # float reductions differ a little between CPUs (AVX2 / AVX-512) and thread counts


@pytest.fixture(scope="module")
def encoder_parts(tiny_state: Path) -> tuple[object, PromptBuilder]:  # noqa: F811
    tokenizer = load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny")))
    return tokenizer, PromptBuilder(PromptConfig(), tokenizer)


def test_one_encoded_rag_example_has_pinned_token_ids(encoder_parts: tuple[object, PromptBuilder]) -> None:
    tokenizer, builder = encoder_parts
    context = builder.format_context([CHUNK])
    enc = ExampleEncoder(tokenizer, builder, max_length=512).encode_qa(QUESTION, context, ANSWER)
    assert enc is not None
    print("input_ids", enc.input_ids, "prompt_len", enc.prompt_len)
    assert enc.input_ids == PREFIX + CONTEXT + SUFFIX + ANSWER_IDS
    assert enc.prompt_len == len(PREFIX + CONTEXT + SUFFIX) and enc.context_cut == 0


def test_a_too_long_example_loses_exactly_its_last_context_tokens(encoder_parts: tuple[object, PromptBuilder]
                                                                   ) -> None:
    tokenizer, builder = encoder_parts
    context = builder.format_context([CHUNK])
    fits = len(PREFIX + SUFFIX + ANSWER_IDS) + 4  # room for four context tokens
    enc = ExampleEncoder(tokenizer, builder, max_length=fits).encode_qa(QUESTION, context, ANSWER)
    assert enc is not None
    assert enc.input_ids == PREFIX + CONTEXT[:4] + SUFFIX + ANSWER_IDS
    assert enc.context_cut == len(CONTEXT) - 4 and len(enc.input_ids) == fits
    bare = ExampleEncoder(tokenizer, builder, max_length=fits - 4).encode_qa(QUESTION, context, ANSWER)
    assert bare is not None and bare.input_ids == PREFIX + SUFFIX + ANSWER_IDS  # no context left at all
    assert ExampleEncoder(tokenizer, builder, max_length=fits - 5).encode_qa(
        QUESTION, context, ANSWER) is None  # the answer never loses a token: the example is dropped


@pytest.mark.slow
def test_first_training_losses_of_a_tiny_causal_lm_run_are_pinned(ingested_url: str, tiny_state: Path,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "run"
    LossRecorder.losses = []
    cfg = train_config([*location(tmp_path, tiny_state, ingested_url, out), "experiment=tiny_causal_lm", *FAST,
                        "data.max_length=128", "data.batch_size=4", "data.limit.train=16",
                        "data.limit.validation=4", "data.limit.test=0", f"data.cache_dir={tmp_path / 'data'}",
                        "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "callbacks=none",
                        f"+callbacks.record._target_={LossRecorder.__module__}.LossRecorder"], out)
    train(cfg)
    losses = LossRecorder.losses
    print("losses", [round(x, 5) for x in losses])
    assert losses == pytest.approx(LOSSES, abs=LOSS_TOLERANCE)
