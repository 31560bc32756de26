"""`promptly eval`: prompts without the answer, batched generation, perplexity, the report end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from promptly.data.config import PromptConfig
from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.evaluation.generation import SamplingConfig, generate_answers, reference_nll
from promptly.evaluation.prompts import build_eval_prompts, reference_sequences
from promptly.model.factory import ModelFactory
from promptly.store.postgres import PostgresStore

from .conftest import REPO_ROOT
from .test_train_common import FAST, location, tiny_state, train_config  # noqa: F401  (fixtures)

SAMPLE = REPO_ROOT / "sample_data"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The tiny local model (random weights) and its tokenizer."""
    torch.manual_seed(0)
    factory = ModelFactory(name_or_path="tiny", tiny={"corpus_dir": str(SAMPLE), "num_hidden_layers": 2,
                                                      "cache_dir": str(tmp_path_factory.mktemp("tiny"))})
    return factory.build(), factory.load_tokenizer()


@pytest.fixture
def encoder(tiny: tuple[Any, Any]) -> ExampleEncoder:
    return ExampleEncoder(tiny[1], PromptBuilder(PromptConfig(), tiny[1]), max_length=512)


def test_eval_prompts_never_contain_the_reference_answer(
        ingested_store: PostgresStore, embedder: Any, encoder: ExampleEncoder) -> None:
    pairs = list(ingested_store.iter_qa_pairs(split="test"))
    assert len(pairs) >= 10
    prompts = build_eval_prompts(pairs, ingested_store, embedder, encoder, k=3, mode="hybrid", reserve=64)
    # 1. The answer is not an input: swapping every reference for another text changes no prompt.
    swapped = [dataclasses.replace(p, answer=f"SENTINEL ANSWER {i}") for i, p in enumerate(pairs)]
    again = build_eval_prompts(swapped, ingested_store, embedder, encoder, k=3, mode="hybrid", reserve=64)
    assert [p.prompt_ids for p in prompts] == [p.prompt_ids for p in again]
    # 2. The decoded prompt holds the question and retrieved chunks, and the answer only where a chunk does.
    tokenizer = encoder.tokenizer
    for p in prompts:
        text = tokenizer.decode(p.prompt_ids)
        assert p.pair.question in text
        if p.pair.answer in text:
            assert any(p.pair.answer in c for c in p.contexts), p.pair.question
    # 3. No gold chunk is slipped in at evaluation: retrieved ids are exactly what search returned.
    missed = [p for p in prompts if not set(p.pair.chunk_ids) & set(p.retrieved_chunk_ids)]
    assert all(len(p.retrieved_chunk_ids) == 3 for p in prompts)
    assert len(missed) < len(prompts)  # retrieval finds gold chunks for some...
    stored = {c.id for c in ingested_store.iter_chunks()}
    assert all(set(p.retrieved_chunk_ids) <= stored for p in prompts)  # ...and ids match stored chunks


def test_batched_generation_matches_one_at_a_time(tiny: tuple[Any, Any], encoder: ExampleEncoder) -> None:
    model, tokenizer = tiny
    rows = [json.loads(line) for line in (SAMPLE / "qa.jsonl").read_text().splitlines()][:12]
    prompts = [encoder.prompt_ids(r["question"], r["answer"][: 40 + 7 * i], reserve=16)[0]
               for i, r in enumerate(rows)]
    assert len({len(p) for p in prompts}) > 4  # different lengths: left padding is exercised
    single = generate_answers(model, tokenizer, prompts, SamplingConfig(batch_size=1, max_new_tokens=12))
    batched = generate_answers(model, tokenizer, prompts, SamplingConfig(batch_size=5, max_new_tokens=12))
    assert batched == single
    assert any(a for a in single)


def test_reference_perplexity_is_exp_of_mean_answer_token_loss(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    seqs = [([5, 9, 14, 3, 22, 7, 8], 4), ([11, 4, 6, 30, 2], 2), ([17, 18, 19, 20, 21, 22, 23, 24, 25], 6)]
    got = reference_nll(model, tokenizer, seqs, batch_size=3)
    total_nll, total_tokens = 0.0, 0
    for (ids, prompt_len), (nll, n) in zip(seqs, got, strict=True):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        by_hand = torch.nn.functional.cross_entropy(logits[prompt_len - 1:-1], torch.tensor(ids[prompt_len:]),
                                                    reduction="sum")
        assert n == len(ids) - prompt_len
        assert nll == pytest.approx(float(by_hand), rel=1e-4)
        total_nll, total_tokens = total_nll + nll, total_tokens + n
    ppl = math.exp(total_nll / total_tokens)
    assert ppl > 1.0


def test_reference_sequences_append_answer_after_prompt(
        ingested_store: PostgresStore, embedder: Any, encoder: ExampleEncoder) -> None:
    pairs = list(ingested_store.iter_qa_pairs(split="test"))[:3]
    prompts = build_eval_prompts(pairs, ingested_store, embedder, encoder, k=1, mode="vector", reserve=32)
    for p, (seq, prompt_len) in zip(prompts, reference_sequences(prompts, encoder), strict=True):
        assert seq[:prompt_len] == p.prompt_ids and seq[-1] == encoder.tokenizer.eos_token_id
        assert p.pair.answer.split()[0] in encoder.tokenizer.decode(seq[prompt_len:])


@pytest.mark.slow
def test_eval_end_to_end_on_a_smoke_checkpoint(
        tmp_path: Path, tiny_state: Path, ingested_url: str) -> None:  # noqa: F811
    from promptly.evaluation.command import run as run_eval
    from promptly.train import train

    run_dir = tmp_path / "train-run"
    cfg = train_config([*FAST, *location(tmp_path, tiny_state, ingested_url, run_dir), "experiment=smoke",
                        "trainer.max_epochs=1", "data.limit.train=32", "module.samples=0"], run_dir)
    train(cfg)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "config.yaml").is_file()

    out = tmp_path / "eval-run"
    report = run_eval(_eval_config(tmp_path, tiny_state, ingested_url, out, run_dir))
    for name in ("report.json", "report.md", "metrics.png", "distributions.png", "config.yaml"):
        assert (out / name).is_file(), name
    logged = [p.read_text() for p in out.rglob("metrics.csv")]  # the configured logger got the metrics
    assert logged and "eval/bleu" in logged[0] and "eval/faithfulness" in logged[0]
    saved = json.loads((out / "report.json").read_text())
    assert saved["overall"] == report["overall"] and len(saved["per_example"]) == 8
    markdown = (out / "report.md").read_text()
    for metric in ("bleu", "rougeL", "perplexity", "faithfulness", "recall@1"):
        value = saved["overall"][metric]
        row = next(line for line in markdown.splitlines() if re.match(rf"\|\s*{re.escape(metric)}\s*\|", line))
        assert f"{value:.4f}" in row, (metric, row)

    with pytest.raises(ValueError, match="does not fit"):
        run_eval(_eval_config(tmp_path, tiny_state, ingested_url, tmp_path / "bad",
                              run_dir=None, ckpt=run_dir / "checkpoints" / "last.ckpt",
                              extra=["model.tiny.hidden_size=64"]))
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        run_eval(_eval_config(tmp_path, tiny_state, ingested_url, tmp_path / "bad2", run_dir=None,
                              ckpt=tmp_path / "missing.ckpt"))


def _eval_config(tmp: Path, state: Path, url: str, out: Path, run_dir: Path | None,
                 ckpt: Path | None = None, extra: list[str] | None = None) -> Any:
    overrides = [*FAST, *location(tmp, state, url, out), "limit=8", "generation.max_new_tokens=16"]
    if run_dir:
        overrides.append(f"run_dir={run_dir}")
    if ckpt:
        overrides.append(f"ckpt_path={ckpt}")
    return train_config(overrides + (extra or []), out, config_name="eval")
