"""Synthetic QA generation: a real `openai` client against a local server speaking the chat-completions
route, and a local Hugging Face model; every reply validated, rejections counted by reason, accepted
pairs stored with their chunk ids and their document's split; re-runs skip chunks that have pairs."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig
from rich.console import Console

from promptly.data.collate import IGNORE_INDEX
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.qa import SplitConfig, split_for_document
from promptly.ingest.sync import sync_documents
from promptly.qa.config import GenerationConfig, PromptConfig
from promptly.qa.generate import generate_pairs, request_seed, sample_chunks
from promptly.qa.generators import GeneratorError, LocalHFGenerator, OpenAICompatibleGenerator
from promptly.qa.validation import REASONS, parse_reply
from promptly.records import Chunk, QAPair
from promptly.store.postgres import PostgresStore

from .cloud.openai_server import OpenAIServer, Reply
from .conftest import REPO_ROOT, as_job, compose, plain

API_KEY = "sk-local-test-0123456789"
DOCS = {  # one chunk each; the responder answers by which one it is shown
    "ports.md": "# Ports\n\nThe proxy listens on port 8080 by default. Set `listen_port` to change the port.",
    "retries.md": "# Retries\n\nFailed upstream calls are retried three times with exponential backoff that "
                  "starts at 200 ms.",
    "retention.md": "# Retention\n\nMessages are kept for seven days before compaction removes them.",
    "limits.md": "# Limits\n\nA single message may be at most 1 MiB; larger payloads are rejected with error Q413.",
}
PORT_PAIRS = [
    {"question": "Which port does the proxy listen on by default?",
     "answer": "The proxy listens on port 8080 by default."},
    {"question": "How do I change the port of the proxy?", "answer": "Set `listen_port` to change the port."},
]
REPLIES: dict[str, str] = {
    # valid, fenced like many chat models do
    "ports.md": "```json\n" + json.dumps({"pairs": PORT_PAIRS}) + "\n```",
    # one good pair and the same question again (normalised: case and punctuation)
    "retries.md": json.dumps({"pairs": [
        {"question": "How often are failed upstream calls retried?",
         "answer": "Failed upstream calls are retried three times with exponential backoff."},
        {"question": "how often are failed upstream calls retried", "answer": "Three times."}]}),
    # not JSON at all
    "retention.md": "Sure! 1. How long are messages kept? Seven days.",
    # an ungrounded answer, an empty question, and an item missing its answer
    "limits.md": json.dumps({"pairs": [
        {"question": "What is the largest message accepted?",
         "answer": "Messages of up to 64 MiB are accepted and archived to tape in Iceland."},
        {"question": " ", "answer": "Q413."},
        {"question": "Which error rejects large payloads?"}]}),
}


def which_doc(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    return next(doc for doc, text in DOCS.items() if text.split("\n\n", 1)[1] in user)


def openai_replies(body: dict[str, Any]) -> str:
    return REPLIES[which_doc(body)]


def entry_config(name: str, tmp_path: Path, overrides: list[str]) -> DictConfig:
    """An entry config composed as the CLI would, resolved as inside a job whose run dir is tmp_path/run."""
    return plain(as_job(compose(name, [f"paths.root_dir={tmp_path}", *overrides]), tmp_path / "run", tmp_path))


def ingest(root: Path, files: dict[str, str], store: PostgresStore, embedder: Embedder,
           chunk_tokens: int = 200) -> dict[str, Chunk]:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    chunker = TokenChunker(chunk_tokens=chunk_tokens, overlap_tokens=0, min_chunk_tokens=4)
    report = sync_documents(load_source(SourceConfig(path=str(root)), chunker.fingerprint()), store, chunker,
                            embedder)
    assert report.ok, report.failed
    return {c.document_id: c for c in store.iter_chunks()}


@pytest.fixture
def corpus(tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> dict[str, Chunk]:
    chunks = ingest(tmp_path / "docs", DOCS, pg_store, embedder)
    assert sorted(chunks) == sorted(DOCS) and pg_store.status().chunks == len(DOCS)  # one chunk per document
    return chunks


def local_generator(server: OpenAIServer, concurrency: int = 1) -> OpenAICompatibleGenerator:
    """The real openai client pointed at the local chat-completions server (one request at a time, unless
    told otherwise: the reference the concurrent run is compared with)."""
    return OpenAICompatibleGenerator(model="local-model", base_url=server.base_url,
                                     api_key_env="PROMPTLY_TEST_QA_KEY", max_retries=0, concurrency=concurrency)


def counts(**nonzero: int) -> Counter[str]:
    return Counter({r: nonzero.get(r, 0) for r in REASONS})


def test_openai_compatible_generation_validates_counts_and_stores(
        corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    cfg = GenerationConfig(min_chunk_tokens=4)
    # The split stored with a document at ingest is the one its pairs get (here: moved by hand).
    moved = next(s for s in ("train", "validation", "test") if s != split_for_document("ports.md", SplitConfig()))
    pg_store.set_document_splits({"ports.md": moved})
    with OpenAIServer(openai_replies, api_key=API_KEY) as server:
        generator = local_generator(server)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PROMPTLY_TEST_QA_KEY", API_KEY)
            report = generate_pairs(pg_store, embedder, generator, cfg)
        requests = list(server.requests)
        headers = list(server.headers)

    print(f"openai_compatible: {report.requests} requests, {report.accepted} accepted, "
          f"rejected {dict(report.rejected)}")
    assert (report.documents, report.requests, report.accepted, report.stored) == (4, 4, 3, 3)
    assert report.rejected == counts(malformed=2, empty=1, duplicate=1, ungrounded=1)
    # The real client sent the documented request: greedy, JSON mode, a seed derived from the chunk.
    assert {h["authorization"] for h in headers} == {f"Bearer {API_KEY}"}
    for body in requests:
        chunk = corpus[which_doc(body)]
        assert body["temperature"] == 0.0 and body["response_format"] == {"type": "json_object"}
        assert body["seed"] == request_seed(42, chunk.id)
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert "Write 2 different questions" in body["messages"][1]["content"]
    stored = {p.question: p for p in pg_store.iter_qa_pairs()}
    assert sorted(stored) == sorted([*(p["question"] for p in PORT_PAIRS),
                                     "How often are failed upstream calls retried?"])
    for pair in stored.values():
        assert pair.chunk_ids == (corpus[pair.document_id].id,)
        assert pair.split == (moved if pair.document_id == "ports.md"
                              else split_for_document(pair.document_id, SplitConfig()))
    assert stored[PORT_PAIRS[0]["question"]].answer == PORT_PAIRS[0]["answer"]


def test_concurrent_requests_give_the_verdicts_of_a_sequential_run(
        corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    lock, state = threading.Lock(), {"running": 0, "peak": 0}

    def slow_replies(body: dict[str, Any]) -> str:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(0.2)  # a model server thinking: the requests overlap
        with lock:
            state["running"] -= 1
        return openai_replies(body)

    with OpenAIServer(slow_replies, api_key=API_KEY) as server:
        generator = local_generator(server, concurrency=4)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PROMPTLY_TEST_QA_KEY", API_KEY)
            report = generate_pairs(pg_store, embedder, generator, GenerationConfig(min_chunk_tokens=4))
    assert state["peak"] >= 2  # requests were in flight together
    # The same counts as the one-at-a-time run of the first test: replies are judged in chunk order.
    assert (report.requests, report.accepted, report.stored) == (4, 3, 3)
    assert report.rejected == counts(malformed=2, empty=1, duplicate=1, ungrounded=1)
    assert sorted(p.question for p in pg_store.iter_qa_pairs()) == sorted(
        [*(p["question"] for p in PORT_PAIRS), "How often are failed upstream calls retried?"])


def test_rerun_skips_chunks_with_pairs_and_regenerate_replaces_only_generated_pairs(
        corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    cfg = GenerationConfig(min_chunk_tokens=4)
    replies = dict(REPLIES)
    hand_written = QAPair("What is the default proxy port?", "8080.", "ports.md",
                          split_for_document("ports.md", SplitConfig()), chunk_ids=(corpus["ports.md"].id,)).with_id()
    with OpenAIServer(lambda body: replies[which_doc(body)], api_key=API_KEY) as server:
        generator = local_generator(server)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PROMPTLY_TEST_QA_KEY", API_KEY)
            first = generate_pairs(pg_store, embedder, generator, cfg)
            asked_first = [which_doc(b) for b in server.requests]
            pg_store.upsert_qa_pairs([hand_written])  # from the QA file (origin "file")
            second = generate_pairs(pg_store, embedder, generator, cfg)
            asked_second = [which_doc(b) for b in server.requests[len(asked_first):]]
            replies["ports.md"] = json.dumps({"pairs": [
                {"question": "Which setting changes the proxy port?",
                 "answer": "Set `listen_port` to change the port."},
                {"question": "What is the default proxy port?", "answer": "Port 8080."}]})  # repeats the file's
            replies["retries.md"] = "I cannot answer that."  # rejected: the old pair must stay
            cfg.regenerate = True
            third = generate_pairs(pg_store, embedder, generator, cfg)
            seeds_first = {which_doc(b): b["seed"] for b in server.requests[: len(asked_first)]}
            seeds_third = {which_doc(b): b["seed"] for b in server.requests[-4:]}

    assert first.stored == 3
    assert (second.chunks_skipped, second.requests, second.stored) == (2, 2, 0)
    assert sorted(asked_second) == ["limits.md", "retention.md"]  # only chunks without pairs are asked again
    assert second.rejected == counts(malformed=2, empty=1, ungrounded=1)  # same replies, same verdicts
    # Regenerate asks every chunk again; ports.md's two generated pairs give way to its new one, the
    # hand-written pair stays (and a generated copy of it is a duplicate), retries.md keeps its old pair.
    assert (third.chunks_skipped, third.requests, third.accepted, third.stored, third.replaced) == (0, 4, 1, 1, 2)
    assert third.rejected == counts(malformed=3, duplicate=1, empty=1, ungrounded=1)
    stored = {p.question: p.origin for p in pg_store.iter_qa_pairs()}
    assert stored == {"What is the default proxy port?": "file", "Which setting changes the proxy port?": "generated",
                      "How often are failed upstream calls retried?": "generated"}
    assert seeds_first == seeds_third  # the same chunk is asked with the same seed on every run


def test_failed_requests_are_counted_and_a_dead_endpoint_stops_the_run(
        corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    def flaky(body: dict[str, Any]) -> str | Reply:
        return Reply("upstream model crashed", status=500) if which_doc(body) == "ports.md" else openai_replies(body)

    with OpenAIServer(flaky, api_key=API_KEY) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTLY_TEST_QA_KEY", API_KEY)
        generator = local_generator(server)
        report = generate_pairs(pg_store, embedder, generator, GenerationConfig(min_chunk_tokens=4))
        assert report.rejected["generator_error"] == 1 and report.stored == 1 and report.ok

        wrong_key = OpenAICompatibleGenerator(model="local-model", base_url=server.base_url,
                                              api_key_env="PROMPTLY_UNSET_KEY_FOR_TEST", max_retries=0,
                                              concurrency=2)
        mp.delenv("PROMPTLY_UNSET_KEY_FOR_TEST", raising=False)
        with pytest.raises(GeneratorError, match=r"3 requests in a row failed.*AuthenticationError"):
            generate_pairs(pg_store, embedder, wrong_key, GenerationConfig(min_chunk_tokens=4, regenerate=True))


def test_sampling_caps_chunks_per_document_and_is_stable(
        tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    sections = "\n\n".join(f"## Part {i}\n\n" + f"Setting number {i} controls the retry budget of stage {i}. " * 6
                           for i in range(8))
    ingest(tmp_path / "docs", {"long.md": "# Long\n\n" + sections, **DOCS}, pg_store, embedder, chunk_tokens=64)
    per_doc = Counter(c.document_id for c in pg_store.iter_chunks())
    assert per_doc["long.md"] >= 5

    cfg = GenerationConfig(per_document=3, min_chunk_tokens=4, seed=7)
    chosen, documents, skipped = sample_chunks(pg_store, cfg, skip=set())
    by_doc = Counter(c.document_id for c in chosen)
    assert documents == 5 and skipped == 0
    assert by_doc == {doc: min(3, n) for doc, n in per_doc.items()}  # every document, at most 3 chunks
    assert [c.id for c in sample_chunks(pg_store, cfg, set())[0]] == [c.id for c in chosen]  # reproducible
    long_ids = {c.id for c in chosen if c.document_id == "long.md"}
    after_skip, _, skipped = sample_chunks(pg_store, cfg, skip=long_ids)
    assert skipped == 3 and [c.id for c in after_skip] == [c.id for c in chosen if c.id not in long_ids]
    other_seed = sample_chunks(pg_store, GenerationConfig(per_document=3, min_chunk_tokens=4, seed=8), set())[0]
    assert {c.id for c in other_seed if c.document_id == "long.md"} != long_ids


def test_prompt_fields_and_reply_parsing() -> None:
    chunk = Chunk(document_id="a.md", ordinal=0, content="Port 8080.", token_count=3,
                  metadata={"title": "Proxy", "heading_path": ["Proxy", "Ports"]})
    prompt = PromptConfig(system="S", user='{title} / {section} / {n}: {context} {"pairs": []}')
    user = 'Proxy / Proxy > Ports / 2: Port 8080. {"pairs": []}'
    assert prompt.messages(chunk, 2) == [{"role": "system", "content": "S"}, {"role": "user", "content": user}]
    assert len(parse_reply('[{"question": "Q?", "answer": "A."}]').pairs) == 1  # a bare list is accepted
    assert parse_reply('{"pairs": [{"question": 1, "answer": "A."}]}').malformed == 1
    assert parse_reply('{"questions": []}').malformed == 1
    assert parse_reply('Here you go: {"pairs": [{"question": "Q?", "answer": "A."}]} Enjoy!').pairs


def test_qa_command_runs_from_the_config_tree(
        tmp_path: Path, corpus: dict[str, Chunk], pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptly.verbs.qa import run

    monkeypatch.setenv("PROMPTLY_QA_TEST_KEY", API_KEY)
    with OpenAIServer(openai_replies, model="served-model", api_key=API_KEY) as server:
        cfg = entry_config("qa", tmp_path, [
            "store=postgres", f"store.url='{pg_url}'", f"qa_generator.base_url={server.base_url}",
            "qa_generator.model=served-model", "qa_generator.api_key_env=PROMPTLY_QA_TEST_KEY",
            "qa_generator.max_retries=0", "qa.min_chunk_tokens=4", "qa.progress=false"])
        out = io.StringIO()
        report = run(cfg, Console(file=out, width=200))
    assert not isinstance(report, int)
    assert (report.accepted, report.stored, sum(report.rejected.values())) == (3, 3, 5)
    text = out.getvalue()
    assert "openai_compatible:served-model" in text
    for reason, n in [("malformed", 2), ("empty", 1), ("duplicate", 1), ("ungrounded", 1), ("surplus", 0)]:
        assert re.search(rf"{reason}\s*│\s*{n}\s*│", text), reason


@pytest.mark.slow
def test_local_hf_generator_plumbing_with_the_tiny_model(
        tmp_path: Path, corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    """The tiny local Llama, taught one reply for one chunk, goes through the same validation and storage."""
    import torch

    from promptly.model.factory import ModelFactory

    factory = ModelFactory("tiny", peft={"method": "full", "r": None, "alpha": None, "dropout": None,
                                         "target_modules": None},
                           tiny={"corpus_dir": str(REPO_ROOT / "sample_data"), "cache_dir": str(tmp_path / "tiny"),
                                 "num_hidden_layers": 2, "max_position_embeddings": 512})
    tokenizer, model = factory.load_tokenizer(), factory.build()
    prompt_cfg = PromptConfig(system="", user="Passage: {context}\nJSON:")
    generator = LocalHFGenerator(model, tokenizer, max_new_tokens=64, device="cpu")
    target = json.dumps({"pairs": [PORT_PAIRS[0]]})
    prompt_ids = tokenizer(generator.render_prompt(prompt_cfg.messages(corpus["ports.md"], 1)),
                           add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + tokenizer(target, add_special_tokens=False)["input_ids"]
                        + [tokenizer.eos_token_id]])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = IGNORE_INDEX
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    exact_in_a_row = 0
    for _ in range(300):  # until greedy decoding reproduces the reply (teacher-forced argmax, 5 steps running)
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        exact = torch.equal(out.logits[0, len(prompt_ids) - 1:-1].argmax(-1), ids[0, len(prompt_ids):])
        exact_in_a_row = exact_in_a_row + 1 if exact else 0
        if exact_in_a_row == 5:
            break

    cfg = GenerationConfig(mode="full_pair", min_chunk_tokens=4, pairs_per_chunk=1, prompt=prompt_cfg)
    report = generate_pairs(pg_store, embedder, generator, cfg)

    print(f"local_hf tiny: {report.requests} requests, {report.accepted} accepted, rejected {dict(report.rejected)}")
    assert report.requests == len(DOCS) and report.rejected["generator_error"] == 0
    assert report.accepted == report.stored == 1
    assert sum(report.rejected.values()) >= 1  # the other chunks' replies were counted, not stored
    (pair,) = list(pg_store.iter_qa_pairs())
    assert (pair.question, pair.answer) == (PORT_PAIRS[0]["question"], PORT_PAIRS[0]["answer"])
    assert pair.chunk_ids == (corpus["ports.md"].id,)
    assert pair.split == split_for_document("ports.md", SplitConfig())
