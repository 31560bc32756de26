"""data=conversations: liked conversations become the datamodule's rag_qa examples, with the chunks they
cited as context and their documents' splits; disliked and unrated ones never; mixable with QA pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promptly.data.datamodule import RagDataModule
from promptly.model.config import TinyConfig
from promptly.model.tiny import load_tiny_tokenizer
from promptly.records import Chunk, QAPair
from promptly.store.base import StoreError
from promptly.store.postgres import PostgresStore

from .conftest import DIM
from .test_conversations import chunks, doc_in  # noqa: F401
from .test_data_datamodule import prompt_text, question_of
from .test_train_common import SAMPLE_DATA, tiny_state  # noqa: F401


@pytest.fixture(scope="module")
def tokenizer(tiny_state: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    return load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny")))


def datamodule(url: str, tokenizer: Any, tmp: Path, embedder: Any = None, **kw: Any) -> RagDataModule:
    return RagDataModule(store=PostgresStore(url, embedding_dim=DIM), tokenizer=tokenizer, embedder=embedder,
                         cache_dir=str(tmp / "data"), max_length=1024, validation_split="test",
                         retrieval={"k": 1}, **kw)


def answer_text(dm: RagDataModule, split: str, i: int) -> str:
    ids, prompt_len = dm.files[split][i]
    return str(dm.tokenizer.decode(ids[prompt_len:], skip_special_tokens=True)).strip()


def examples(dm: RagDataModule, split: str) -> dict[str, tuple[str, str]]:
    """question -> (prompt, answer) of every encoded example of a split."""
    out = {}
    for i in range(len(dm.files[split])):
        prompt = prompt_text(dm, split, i)
        out[question_of(prompt)] = (prompt, answer_text(dm, split, i))
    return out


def test_liked_conversations_are_the_examples_with_their_cited_chunks(
        pg_url: str, pg_store: PostgresStore, chunks: dict[str, list[Chunk]], tokenizer: Any,  # noqa: F811
        tmp_path: Path) -> None:
    train, test = doc_in("train"), doc_in("test")
    first, second = chunks[train][1], chunks[train][0]
    pg_store.add_conversation("How often are failed calls retried?", "Three times, with backoff.",
                              [first.id, second.id], "v1", feedback="up")
    pg_store.add_conversation("How long are messages kept?", "Seven days.", [chunks[test][0].id], "v1",
                              feedback="up")
    pg_store.add_conversation("Which port does it use?", "Port 22.", [second.id], "v1", feedback="down")
    pg_store.add_conversation("Is it fast?", "Yes.", [second.id], "v1")  # unrated
    pg_store.add_conversation("Gone?", "Yes.", ["00000000-0000-0000-0000-000000000001"], "v1", feedback="up")

    dm = datamodule(pg_url, tokenizer, tmp_path, sources=["conversations"])  # no embedder: nothing retrieved
    dm.prepare_data()
    dm.setup("fit")

    trained = examples(dm, "train")
    assert list(trained) == ["How often are failed calls retried?"]  # disliked, unrated, orphaned: never
    prompt, answer = trained["How often are failed calls retried?"]
    assert answer == "Three times, with backoff."
    # The cited chunks are the context, in the order the answer cited them.
    assert prompt.index(first.content.strip()[:60]) < prompt.index(second.content.strip()[:60])
    assert list(examples(dm, "test")) == ["How long are messages kept?"]  # a test document: held out
    assert (dm.stats["train"]["examples"], dm.stats["test"]["examples"]) == (1, 1)


def test_conversations_mix_with_qa_pairs(pg_url: str, pg_store: PostgresStore, embedder: Any,
                                         chunks: dict[str, list[Chunk]], tokenizer: Any,  # noqa: F811
                                         tmp_path: Path) -> None:
    train, test = doc_in("train"), doc_in("test")
    pg_store.upsert_qa_pairs([QAPair("Which port does the proxy listen on?", "Port 8080.", train, "train",
                                     chunk_ids=(chunks[train][0].id,)),
                              QAPair("When is compaction run?", "After seven days.", test, "test",
                                     chunk_ids=(chunks[test][0].id,))])
    pg_store.add_conversation("How often are failed calls retried?", "Three times.", [chunks[train][1].id], "v1",
                              feedback="up")
    only_qa = datamodule(pg_url, tokenizer, tmp_path / "qa", embedder)
    only_qa.prepare_data()
    only_qa.setup("fit")
    both = datamodule(pg_url, tokenizer, tmp_path / "both", embedder, sources=["qa_pairs", "conversations"])
    both.prepare_data()
    both.setup("fit")
    assert list(examples(only_qa, "train")) == ["Which port does the proxy listen on?"]
    assert sorted(examples(both, "train")) == ["How often are failed calls retried?",
                                               "Which port does the proxy listen on?"]
    assert list(examples(both, "test")) == ["When is compaction run?"]
    assert both.fingerprint() != only_qa.fingerprint()  # a cache never serves one source's data for another


def test_no_liked_conversation_is_a_clear_error(pg_url: str, pg_store: PostgresStore,
                                                chunks: dict[str, list[Chunk]], tokenizer: Any,  # noqa: F811
                                                tmp_path: Path) -> None:
    pg_store.add_conversation("Which port?", "Port 22.", [chunks[doc_in("train")][0].id], "v1", feedback="down")
    dm = datamodule(pg_url, tokenizer, tmp_path, sources=["conversations"])
    with pytest.raises(StoreError, match=r"conversations but none is liked yet.*promptly serve"):
        dm.prepare_data()
    with pytest.raises(ValueError, match="task=rag_qa"):
        datamodule(pg_url, tokenizer, tmp_path, task="causal_lm", sources=["conversations"])
    with pytest.raises(ValueError, match="qa_pairs"):  # retrieval for QA pairs needs the embedder
        datamodule(pg_url, tokenizer, tmp_path, sources=["qa_pairs"])
