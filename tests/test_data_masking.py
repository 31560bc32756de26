"""Prompt masking, packing and truncation, on the tiny tokenizer and model (no store needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptly.data.batching import pack_rows, plan_batches
from promptly.data.collate import IGNORE_INDEX, Collator
from promptly.data.config import Batching, ChatTemplateUse, PromptConfig
from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.model.config import TinyConfig
from promptly.model.factory import ModelFactory
from promptly.model.loss import supervised_loss
from promptly.model.tiny import load_tiny_tokenizer

from .test_train_common import SAMPLE_DATA, tiny_state  # noqa: F401

FULL = {"method": "full", "r": None, "alpha": None, "dropout": None, "target_modules": None}


@pytest.fixture(scope="module")
def factory(tiny_state: Path) -> ModelFactory:  # noqa: F811
    return ModelFactory("tiny", peft=FULL, tiny=TinyConfig(corpus_dir=str(SAMPLE_DATA),
                                                           cache_dir=str(tiny_state / "tiny")))


@pytest.fixture(scope="module")
def tokenizer(factory: ModelFactory):  # type: ignore[no-untyped-def]
    return factory.load_tokenizer()


@pytest.fixture(scope="module")
def model(factory: ModelFactory):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return factory.build().eval()


def encoder(tokenizer, max_length: int = 512, **prompt) -> ExampleEncoder:  # type: ignore[no-untyped-def]
    return ExampleEncoder(tokenizer, PromptBuilder(PromptConfig(**prompt), tokenizer), max_length)


QUESTION = "Which cipher does driftsync use?"
ANSWER = "driftsync encrypts every repository with AES-256-GCM."
CONTEXT = "driftsync 2.7 encrypts repositories with AES-256-GCM. " * 6


def test_tiny_tokenizer_is_deterministic_and_cached(tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    a = load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tmp_path / "a")))
    b = load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tmp_path / "b")))
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(list((tmp_path / "a").glob("tokenizer-*/tokenizer.json"))) == 1
    text = "driftsync encrypts repositories with AES-256-GCM."
    assert a.decode(a(text)["input_ids"]) == text
    assert {a.pad_token, a.bos_token, a.eos_token} == {"<pad>", "<s>", "</s>"}


def test_encoded_example_masks_exactly_the_prompt(tokenizer) -> None:  # type: ignore[no-untyped-def]
    enc = encoder(tokenizer).encode_qa(QUESTION, CONTEXT, ANSWER)
    assert enc is not None and enc.context_cut == 0
    answer_ids = enc.input_ids[enc.prompt_len:]
    assert answer_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer_ids, skip_special_tokens=True) == " " + ANSWER
    prompt = tokenizer.decode(enc.input_ids[: enc.prompt_len], skip_special_tokens=True)
    assert prompt.endswith(f"Question: {QUESTION}\nAnswer:") and CONTEXT.strip() in prompt
    assert enc.input_ids[0] == tokenizer.bos_token_id


def test_long_examples_lose_context_never_the_answer(tokenizer) -> None:  # type: ignore[no-untyped-def]
    full = encoder(tokenizer).encode_qa(QUESTION, CONTEXT, ANSWER)
    assert full is not None
    short = encoder(tokenizer, max_length=len(full.input_ids) - 20).encode_qa(QUESTION, CONTEXT, ANSWER)
    assert short is not None
    assert short.context_cut == 20 and len(short.input_ids) == len(full.input_ids) - 20
    assert short.input_ids[short.prompt_len:] == full.input_ids[full.prompt_len:]  # the whole answer
    parts = PromptBuilder(PromptConfig(), tokenizer).parts(QUESTION)
    head = 1 + len(tokenizer(parts.prefix, add_special_tokens=False)["input_ids"])
    tail = len(tokenizer(parts.suffix, add_special_tokens=False)["input_ids"]) + len(full.input_ids) - full.prompt_len
    assert short.input_ids[:head] == full.input_ids[:head]  # instructions kept
    assert short.input_ids[-tail:] == full.input_ids[-tail:]  # question and answer kept
    assert short.input_ids[head:-tail] == full.input_ids[head : -tail - 20]  # the context's end was cut
    tiny_budget = encoder(tokenizer, max_length=40).encode_qa(QUESTION, CONTEXT, ANSWER)
    assert tiny_budget is None  # the answer cannot fit: dropped (and counted), never cut


def test_chat_template_prompts_end_with_the_generation_prompt(tokenizer) -> None:  # type: ignore[no-untyped-def]
    chat = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    chat.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    builder = PromptBuilder(PromptConfig(system="Be brief."), chat)
    assert builder.use_chat_template
    parts = builder.parts(QUESTION)
    assert parts.prefix.startswith("<|system|>Be brief.\n<|user|>Context:\n")
    assert parts.suffix == f"\n\nQuestion: {QUESTION}\n<|assistant|>" and parts.answer_prefix == ""
    enc = ExampleEncoder(chat, builder, 512).encode_qa(QUESTION, CONTEXT, ANSWER)
    assert enc is not None and enc.input_ids[0] != chat.bos_token_id  # the template writes its own
    assert not PromptBuilder(PromptConfig(chat_template=ChatTemplateUse.never), chat).use_chat_template
    with pytest.raises(ValueError, match="no chat template"):
        PromptBuilder(PromptConfig(chat_template=ChatTemplateUse.always), tokenizer)


def examples(tokenizer, n: int = 6) -> list[tuple[np.ndarray, int]]:  # type: ignore[no-untyped-def]
    enc = encoder(tokenizer, max_length=120)
    out = []
    for i in range(n):
        e = enc.encode_qa(f"Question number {i}?", CONTEXT[: 40 + 25 * i], f"Answer {i} " * (i + 1))
        assert e is not None
        out.append((np.asarray(e.input_ids), e.prompt_len))
    return out


def test_labels_are_ignored_exactly_on_prompt_and_padding(tokenizer) -> None:  # type: ignore[no-untyped-def]
    exs = examples(tokenizer, 3)
    batch = Collator(tokenizer.pad_token_id, packed=False)([[e] for e in exs])
    for r, (ids, prompt_len) in enumerate(exs):
        labels, n = batch["labels"][r], len(ids)
        assert (labels[:prompt_len] == IGNORE_INDEX).all()
        assert torch.equal(labels[prompt_len:n], torch.as_tensor(ids[prompt_len:]))
        assert (labels[n:] == IGNORE_INDEX).all() and (batch["attention_mask"][r, n:] == 0).all()
        assert (batch["input_ids"][r, n:] == tokenizer.pad_token_id).all()
    assert int(batch["n_supervised"]) == sum(len(ids) - p for ids, p in exs)


def test_packed_rows_restart_positions_and_never_attend_across(tokenizer, model) -> None:  # type: ignore[no-untyped-def]
    exs = examples(tokenizer)
    rows = [[exs[0], exs[3]], [exs[1], exs[2], exs[4]], [exs[5]]]
    packed = Collator(tokenizer.pad_token_id, packed=True)(rows)
    assert "attention_mask" not in packed
    for r, row in enumerate(rows):
        at = 0
        for ids, prompt_len in row:
            assert packed["position_ids"][r, at : at + len(ids)].tolist() == list(range(len(ids)))
            assert (packed["labels"][r, at : at + prompt_len] == IGNORE_INDEX).all()  # boundary included
            at += len(ids)
        assert packed["position_ids"][r, at:].tolist() == list(range(packed["input_ids"].shape[1] - at))
    unpacked = Collator(tokenizer.pad_token_id, packed=False)([[e] for e in exs])
    with torch.no_grad():
        for head_only in (True, False):
            p_sum, p_n = supervised_loss(model, packed, head_only)
            u_sum, u_n = supervised_loss(model, unpacked, head_only)
            assert int(p_n) == int(u_n)
            assert torch.allclose(p_sum / p_n, u_sum / u_n, atol=1e-5, rtol=1e-5)
        # The same rows with positions running on: attention now crosses examples and the loss moves.
        crossing = dict(packed)
        crossing["position_ids"] = torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"])
        c_sum, c_n = supervised_loss(model, crossing)
        assert abs(float(c_sum / c_n) - float(p_sum / p_n)) > 1e-3


def test_head_only_loss_equals_the_models_own_loss(tokenizer, model) -> None:  # type: ignore[no-untyped-def]
    batch = Collator(tokenizer.pad_token_id, packed=False)([[e] for e in examples(tokenizer, 4)])
    with torch.no_grad():
        s, n = supervised_loss(model, batch)
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
    assert torch.allclose(s / n, reference, atol=1e-5)


def test_batch_plans_are_reproducible_cover_every_example_and_shard_by_rank() -> None:
    lengths = np.random.default_rng(1).integers(20, 200, 103)
    for mode in Batching.packed, Batching.grouped, Batching.padded:
        a = plan_batches(lengths, mode, 4, 256, True, seed=7, epoch=3)
        assert a == plan_batches(lengths, mode, 4, 256, True, seed=7, epoch=3)
        assert a != plan_batches(lengths, mode, 4, 256, True, seed=7, epoch=4)
        flat = sorted(i for batch in a for row in batch for i in row)
        assert flat == list(range(103))
        if mode == Batching.packed:
            assert all(sum(lengths[i] for i in row) <= 256 for batch in a for row in batch)
        ranks = [plan_batches(lengths, mode, 4, 256, True, 7, 3, rank=r, world_size=2) for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1])
        assert not {i for b in ranks[0] for row in b for i in row} & {i for b in ranks[1] for row in b for i in row}
    grouped = plan_batches(lengths, Batching.grouped, 4, 256, True, 7, 0)
    padded = plan_batches(lengths, Batching.padded, 4, 256, True, 7, 0)

    def waste(plan: list[list[list[int]]]) -> int:
        return sum(max(lengths[r[0]] for r in b) * len(b) - sum(lengths[r[0]] for r in b) for b in plan)

    assert waste(grouped) < waste(padded) / 3


def test_first_fit_packing_fills_rows() -> None:
    lengths = np.array([60, 50, 40, 30, 20, 100])
    rows = pack_rows(list(range(6)), lengths, 100)
    assert sorted(sorted(r) for r in rows) == [[0, 2], [1, 3, 4], [5]]
