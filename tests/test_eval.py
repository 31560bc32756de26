"""`promptly eval`: prompts without the answer, batched generation, perplexity, the report end to end."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from promptly.answering import Answerer
from promptly.data.config import PromptConfig
from promptly.data.encoding import ExampleEncoder
from promptly.data.prompts import PromptBuilder
from promptly.evaluation.metrics import EvalExample, evaluate_examples
from promptly.evaluation.perplexity import reference_nll
from promptly.evaluation.prompts import reference_sequences
from promptly.model.config import SamplingConfig
from promptly.model.factory import ModelFactory
from promptly.model.generation import generate
from promptly.model.loading import LoadedModel
from promptly.retrieval import Retriever
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


def answerer(tiny: tuple[Any, Any], store: PostgresStore, embedder: Any, k: int = 3, mode: str = "hybrid",
             max_new_tokens: int = 64) -> Answerer:
    loaded = LoadedModel(model=tiny[0], tokenizer=tiny[1], name="tiny", origin="tiny", checkpoint=None,
                         prompt=PromptConfig(), max_length=512)
    return Answerer(loaded, Retriever(store, embedder, k=k, mode=mode), SamplingConfig(max_new_tokens=max_new_tokens))


def test_eval_prompts_never_contain_the_reference_answer(
        ingested_store: PostgresStore, embedder: Any, tiny: tuple[Any, Any]) -> None:
    pairs = list(ingested_store.iter_qa_pairs(split="test"))
    assert len(pairs) >= 10
    rag = answerer(tiny, ingested_store, embedder, k=1)  # one chunk: some questions miss their gold chunk
    prepared = rag.prepare([p.question for p in pairs])
    # 1. The answer is not an input: a prompt depends on the question and the store only.
    tokenizer = tiny[1]
    for pair, q in zip(pairs, prepared, strict=True):
        text = tokenizer.decode(q.prompt_ids)
        assert pair.question in text
        if pair.answer in text:
            assert any(pair.answer in c["content"] for c in q.chunks), pair.question
    # 2. No gold chunk is slipped in: the prompt's chunks are exactly what `search` returns for the question.
    vectors = embedder.embed_queries([p.question for p in pairs])
    for pair, q, vector in zip(pairs, prepared, vectors, strict=True):
        hits = ingested_store.search(vector, pair.question, k=1, mode="hybrid")
        shown, returned = [c["chunk_id"] for c in q.chunks], [h.chunk_id for h in hits]
        # What the prompt shows is what search returned, in order; a long context loses trailing chunks only.
        assert shown == returned[: len(shown)] and (q.context_cut or len(shown) == len(returned)), pair.question
    missed = [p for p, q in zip(pairs, prepared, strict=True)
              if not set(p.chunk_ids) & {c["chunk_id"] for c in q.chunks}]
    assert missed, "every gold chunk was retrieved: this corpus cannot show a slipped-in gold chunk"
    stored = {c.id for c in ingested_store.iter_chunks()}
    assert all({c["chunk_id"] for c in q.chunks} <= stored for q in prepared)  # ids match stored chunks


def test_batched_generation_matches_one_at_a_time(tiny: tuple[Any, Any], encoder: ExampleEncoder) -> None:
    model, tokenizer = tiny
    rows = [json.loads(line) for line in (SAMPLE / "qa.jsonl").read_text().splitlines()][:12]
    prompts = [encoder.prompt_ids(r["question"], r["answer"][: 40 + 7 * i], reserve=16)[0]
               for i, r in enumerate(rows)]
    assert len({len(p) for p in prompts}) > 4  # different lengths: left padding is exercised
    single = generate(model, tokenizer, prompts, SamplingConfig(batch_size=1, max_new_tokens=12))
    batched = generate(model, tokenizer, prompts, SamplingConfig(batch_size=5, max_new_tokens=12))
    assert batched == single
    assert any(a for a in single)
    streamed: dict[int, list[int]] = {}
    again = generate(model, tokenizer, prompts, SamplingConfig(batch_size=5, max_new_tokens=12),
                     on_token=lambda i, t: streamed.setdefault(i, []).append(t))
    assert again == single  # the per-token callback sees exactly the tokens of each answer, in order
    for i, answer in enumerate(single):
        assert tokenizer.decode(streamed.get(i, []), skip_special_tokens=True).strip() == answer


def test_reference_perplexity_is_exp_of_mean_answer_token_loss(tiny: tuple[Any, Any], embedder: Any) -> None:
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
    # The report's perplexity pools tokens over examples: exp(total NLL / total tokens), not a mean of ppls.
    examples = [EvalExample(question="q", reference="r", prediction="r", answer_nll=nll, answer_tokens=n)
                for nll, n in got]
    result = evaluate_examples(examples, embedder)
    assert result.overall["perplexity"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-5)
    mean_of_ppls = sum(math.exp(nll / n) for nll, n in got) / len(got)
    assert result.overall["perplexity"] != pytest.approx(mean_of_ppls, rel=1e-3)


def test_reference_sequences_append_answer_after_prompt(
        ingested_store: PostgresStore, embedder: Any, tiny: tuple[Any, Any]) -> None:
    pairs = list(ingested_store.iter_qa_pairs(split="test"))[:3]
    rag = answerer(tiny, ingested_store, embedder, k=1, mode="vector", max_new_tokens=32)
    prepared = rag.prepare([p.question for p in pairs])
    seqs = reference_sequences(prepared, [p.answer for p in pairs], rag.encoder)
    for pair, q, (seq, prompt_len) in zip(pairs, prepared, seqs, strict=True):
        assert seq[:prompt_len] == q.prompt_ids and seq[-1] == rag.encoder.tokenizer.eos_token_id
        assert pair.answer.split()[0] in rag.encoder.tokenizer.decode(seq[prompt_len:])


@pytest.mark.slow
def test_eval_end_to_end_on_a_smoke_checkpoint(
        tmp_path: Path, tiny_state: Path, ingested_url: str) -> None:  # noqa: F811
    from promptly.errors import InputNotFoundError, ModelLoadError
    from promptly.verbs.eval import run as run_eval
    from promptly.verbs.train import train

    run_dir = tmp_path / "logs" / "train" / "runs" / "smoke"
    cfg = train_config([*FAST, *location(tmp_path, tiny_state, ingested_url, run_dir), "experiment=smoke",
                        "trainer.max_epochs=1", "data.limit.train=32", "module.samples=0"], run_dir)
    train(cfg)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "config.yaml").is_file()

    out = tmp_path / "eval-run"
    report = run_eval(_eval_config(tmp_path, tiny_state, ingested_url, out, ["run_dir=latest"]))
    for name in ("report.json", "report.md", "metrics.png", "distributions.png"):
        assert (out / name).is_file(), name
    logged = [p.read_text() for p in out.rglob("metrics.csv")]  # the configured logger got the metrics
    assert logged and "eval/bleu" in logged[0] and "eval/faithfulness" in logged[0]
    saved = json.loads((out / "report.json").read_text())
    assert saved["overall"] == report["overall"] and len(saved["per_example"]) == 8
    assert saved["settings"]["name"].endswith(run_dir.name)  # run_dir=latest found the newest training run
    empty = sum(1 for row in saved["per_example"] if not row["prediction"].strip())
    assert saved["settings"]["empty_answers"] == empty
    assert {"abstained", "key_fact_recall", "citation_hit", "retrieval_hit"} <= set(saved["overall"])  # evidence
    markdown = (out / "report.md").read_text()
    for metric in ("bleu", "rougeL", "perplexity", "faithfulness", "recall@1"):
        value = saved["overall"][metric]
        row = next(line for line in markdown.splitlines() if re.match(rf"\|\s*{re.escape(metric)}\s*\|", line))
        assert f"{value:.4f}" in row, (metric, row)
    # Worst examples and their retrieved chunks are named by document title and chunk ordinal, not by UUID.
    headings = [line for line in markdown.splitlines() if line.startswith("### ")]
    assert headings and all(re.match(r"### \d+\. .+ #\d+: ", h) for h in headings), headings
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", "\n".join(headings))
    assert all(len(r["retrieved_chunk_labels"]) == len(r["retrieved_chunk_ids"]) for r in saved["per_example"])
    # The training run records the evaluation, so publishing finds the report it is judged by.
    records = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["report_json"] == str((out / "report.json").resolve())
    assert records[0]["metrics"] == saved["overall"] and records[0]["split"] == "test"

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(ModelLoadError, match="does not fit"):
        run_eval(_eval_config(tmp_path, tiny_state, ingested_url, tmp_path / "bad",
                              ["model=tiny", "model.tiny.hidden_size=64", f"ckpt_path={ckpt}"]))
    with pytest.raises(InputNotFoundError, match="ckpt_path"):
        run_eval(_eval_config(tmp_path, tiny_state, ingested_url, tmp_path / "bad2",
                              ["model=tiny", f"ckpt_path={tmp_path / 'missing.ckpt'}"]))


def _eval_config(tmp: Path, state: Path, url: str, out: Path, extra: list[str]) -> Any:
    overrides = [*location(tmp, state, url, out), "logger=csv", "limit=8", "generation.max_new_tokens=16",
                 "data.max_length=160", "data.retrieval.k=1"]
    return train_config(overrides + extra, out, config_name="eval")
