"""RagDataModule on the real ingested sample corpus (embedded Postgres): splits, retrieval, gold
chunks, truncation counts, reproducible and resumable batches, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptly.data.collate import IGNORE_INDEX
from promptly.data.datamodule import RagDataModule
from promptly.data.tables import linearize_tables
from promptly.model.config import TinyConfig
from promptly.model.tiny import load_tiny_tokenizer
from promptly.records import Chunk, Document, sha256_hex
from promptly.store.base import StoreError
from promptly.store.postgres import PostgresStore

from .conftest import DIM
from .test_train_common import SAMPLE_DATA, tiny_state  # noqa: F401


@pytest.fixture(scope="module")
def tokenizer(tiny_state: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    return load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny")))


def datamodule(url: str, tokenizer: Any, embedder: Any, tmp: Path, **kw: Any) -> RagDataModule:
    kw.setdefault("retrieval", {"k": 1})
    return RagDataModule(store=PostgresStore(url, embedding_dim=DIM), tokenizer=tokenizer, embedder=embedder,
                         cache_dir=str(tmp / "data"), **kw)


def prompt_text(dm: RagDataModule, split: str, i: int) -> str:
    ids, prompt_len = dm.files[split][i]
    return str(dm.tokenizer.decode(ids[:prompt_len], skip_special_tokens=True))


def question_of(prompt: str) -> str:
    return prompt.rsplit("Question: ", 1)[1].rsplit("\nAnswer:", 1)[0]


def test_examples_follow_the_stores_document_splits_with_gold_and_retrieved_context(
        ingested_url: str, ingested_store: PostgresStore, tokenizer: Any, embedder: Any, tmp_path: Path) -> None:
    dm = datamodule(ingested_url, tokenizer, embedder, tmp_path, max_length=4096,
                    retrieval={"k": 1, "include_gold": True, "include_gold_eval": False})
    dm.prepare_data()
    dm.setup("fit")
    pairs = {s: list(ingested_store.iter_qa_pairs(split=s)) for s in ("train", "validation")}
    docs = {s: {p.document_id for p in ps} for s, ps in pairs.items()}
    assert not docs["train"] & docs["validation"]
    assert dm.stats["train"]["examples"] == len(pairs["train"]) and dm.stats["train"]["dropped"] == 0
    chunks = {c.id: c for c in ingested_store.iter_chunks()}
    by_question = {p.question: p for p in pairs["train"]}
    for i in range(len(dm.files["train"])):
        prompt = prompt_text(dm, "train", i)
        pair = by_question[question_of(prompt)]  # every training prompt is a train-split question
        gold = linearize_tables(chunks[pair.chunk_ids[0]].content).strip()  # as the prompt writes tables
        assert gold in prompt  # the gold chunk is always shown
    # Validation shows what retrieval really returns for the question: the store's own top hit.
    val = {p.question: p for p in pairs["validation"]}
    for i in range(min(5, len(dm.files["validation"]))):
        prompt = prompt_text(dm, "validation", i)
        q = question_of(prompt)
        assert q in val
        top = ingested_store.search(embedder.embed_query(q), q, k=1, mode="hybrid")[0]
        assert linearize_tables(top.content).strip() in prompt


def test_long_examples_are_cut_in_context_counted_and_keep_whole_answers(
        ingested_url: str, ingested_store: PostgresStore, tokenizer: Any, embedder: Any, tmp_path: Path) -> None:
    dm = datamodule(ingested_url, tokenizer, embedder, tmp_path, max_length=160, retrieval={"k": 2},
                    limit={"train": 40, "validation": 5, "test": 0})
    dm.prepare_data()
    dm.setup("fit")
    stats = dm.stats["train"]
    assert stats["examples"] == 40 and stats["context_truncated"] >= 35 and stats["context_tokens_cut"] > 0
    answers = {p.question: p.answer for p in ingested_store.iter_qa_pairs(split="train")}
    for i in range(40):
        ids, prompt_len = dm.files["train"][i]
        assert len(ids) <= 160
        answer = tokenizer.decode(ids[prompt_len:-1])
        assert ids[-1] == tokenizer.eos_token_id
        assert answer == " " + answers[question_of(prompt_text(dm, "train", i))]


def test_batches_are_reproducible_and_resume_mid_epoch(
        ingested_url: str, tokenizer: Any, embedder: Any, tmp_path: Path) -> None:
    dm = datamodule(ingested_url, tokenizer, embedder, tmp_path, max_length=256, batch_size=4,
                    limit={"train": 30, "validation": 4, "test": 0})
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    epoch0 = [b["input_ids"] for b in loader]
    assert all(np.array_equal(a, b["input_ids"]) for a, b in zip(epoch0, dm.train_dataloader(), strict=True))
    for b in dm.train_dataloader():  # labels: -100 on prompt and padding only
        assert ((b["labels"] == IGNORE_INDEX) | (b["labels"] == b["input_ids"])).all()
        assert ((b["attention_mask"] == 0) <= (b["labels"] == IGNORE_INDEX)).all()
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 0, "consumed": 3}
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed]
    assert len(rest) == len(epoch0) - 3
    assert all(np.array_equal(a, b) for a, b in zip(epoch0[3:], rest, strict=True))
    loader.batch_sampler.set_epoch(1)
    assert not all(np.array_equal(a, b["input_ids"]) for a, b in zip(epoch0, loader, strict=False))


def test_causal_lm_trains_on_chunk_text_split_by_document(
        ingested_url: str, ingested_store: PostgresStore, tokenizer: Any, tmp_path: Path) -> None:
    dm = datamodule(ingested_url, tokenizer, None, tmp_path, task="causal_lm", max_length=128)
    dm.prepare_data()
    dm.setup("fit")
    n_tokens = sum(len(tokenizer(c.content, add_special_tokens=False)["input_ids"]) + 2
                   for c in ingested_store.iter_chunks())
    written = sum(dm.stats[s]["tokens"] for s in ("train", "validation", "test"))
    assert abs(written - n_tokens) <= 3 * 315  # every chunk, bar 1-token window tails
    ids, prompt_len = dm.files["train"][0]
    assert prompt_len == 1 and ids[0] == tokenizer.bos_token_id
    qa_split = {p.document_id: p.split for p in ingested_store.iter_qa_pairs()}
    val_text = tokenizer.decode(np.concatenate([dm.files["validation"][i][0] for i in range(3)]))
    val_docs = {d for d, s in qa_split.items() if s == "validation"}
    owners = {c.document_id for c in ingested_store.iter_chunks() if c.content[:40] in val_text}
    assert owners and owners <= val_docs


def test_an_empty_store_says_to_run_ingest(pg_url: str, tokenizer: Any, embedder: Any, tmp_path: Path) -> None:
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        store.migrate()
    dm = datamodule(pg_url, tokenizer, embedder, tmp_path)
    with pytest.raises(StoreError, match=r"no documents.*promptly ingest"):
        dm.prepare_data()


def test_a_store_without_qa_pairs_says_what_to_run(pg_url: str, tokenizer: Any, embedder: Any,
                                                   tmp_path: Path) -> None:
    with PostgresStore(pg_url, embedding_dim=DIM) as store:
        store.migrate()
        text = "gatekeep reads its rules from gatekeep.toml."
        doc = Document(id="gatekeep/README.md", text=text, title="gatekeep", source="t", uri="file://x",
                       content_hash=sha256_hex(text))
        vec = tuple(float(x) for x in np.eye(DIM, dtype=np.float32)[0])
        store.upsert_document(doc, [Chunk(doc.id, 0, text, 9, embedding=vec)])
    dm = datamodule(pg_url, tokenizer, embedder, tmp_path)
    with pytest.raises(StoreError, match=r"no QA pairs.*promptly ingest.*data=causal_lm"):
        dm.prepare_data()
    causal = datamodule(pg_url, tokenizer, None, tmp_path / "c", task="causal_lm")
    causal.prepare_data()  # chunks alone are enough for continued pre-training
    assert json.loads(causal.manifest_path.read_text())["stats"]
