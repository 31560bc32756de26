"""Chunks carry their context: title and heading path are embedded and indexed, and part of the fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptly.ingest.chunking import TokenChunker, chunk_context, untruncated_tokenizer
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.sync import sync_documents
from promptly.records import Document, sha256_hex
from promptly.store.postgres import PostgresStore

PAGE = """# Deployment guide

## Ports

The proxy listens on 8080 by default.

## Backups

### Compression

Archives use zstd at level 19, which trades time for size.
"""


def bound(chunker: TokenChunker, embedder: Embedder) -> TokenChunker:
    return chunker.bind(untruncated_tokenizer(embedder.hf_tokenizer), embedder.max_seq_length)


def doc(text: str = PAGE, title: str = "Ops handbook") -> Document:
    return Document(id="ops.md", text=text, title=title, source="t", uri="file://ops.md",
                    content_hash=sha256_hex(text), metadata={"format": "markdown"})


def test_context_names_title_and_heading_path_once() -> None:
    assert chunk_context("Ops handbook", ["Deployment guide", "Backups", "Compression \u00b6"]) == (
        "Ops handbook > Deployment guide > Backups > Compression")
    assert chunk_context("json — JSON encoder — Python docs", ["json — JSON encoder \u00b6", "Basic Usage"]) == (
        "json — JSON encoder — Python docs > Basic Usage")
    assert chunk_context("", []) == ""


def test_chunks_store_and_embed_their_context(embedder: Embedder) -> None:
    chunker = bound(TokenChunker(chunk_tokens=20, overlap_tokens=0, min_chunk_tokens=1), embedder)
    chunks = chunker.split(doc())
    last = chunks[-1]
    assert "zstd" in last.content
    assert last.metadata["context"] == "Ops handbook > Deployment guide > Backups > Compression"
    assert chunker.embedding_text(last) == f"{last.metadata['context']}\n\n{last.content}"
    plain = bound(TokenChunker(chunk_tokens=20, overlap_tokens=0, min_chunk_tokens=1, context=False), embedder)
    assert all("context" not in c.metadata for c in plain.split(doc()))
    assert plain.embedding_text(plain.split(doc())[-1]) == last.content


def test_context_is_cut_so_the_chunk_itself_is_never_truncated(embedder: Embedder) -> None:
    chunker = bound(TokenChunker(chunk_tokens=250, overlap_tokens=0), embedder)
    text = " ".join(f"word{i}" for i in range(300))
    for chunk in chunker.split(doc(text=text, title="A very long title " * 40)):
        embedded = chunker.embedding_text(chunk)
        assert embedded.endswith(chunk.content)
        assert chunker.count_tokens(embedded) + chunker.special_tokens <= embedder.max_seq_length


def test_changing_the_context_rule_changes_the_fingerprint_and_re_embeds(
        tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    (tmp_path / "ops.md").write_text(PAGE)
    source = SourceConfig(path=str(tmp_path))
    with_context, without = TokenChunker(), TokenChunker(context=False)
    assert with_context.fingerprint() != without.fingerprint()
    first = sync_documents(load_source(source, with_context.fingerprint()), pg_store, with_context, embedder)
    again = sync_documents(load_source(source, with_context.fingerprint()), pg_store, with_context, embedder)
    changed = sync_documents(load_source(source, without.fingerprint()), pg_store, without, embedder)
    assert (first.added, again.unchanged, changed.updated) == (1, 1, 1)
    assert all("context" not in c.metadata for c in pg_store.iter_chunks())


@pytest.mark.parametrize("context", [True, False])
def test_title_words_find_chunks_only_with_context(pg_store: PostgresStore, embedder: Embedder,
                                                    context: bool) -> None:
    chunker = TokenChunker(chunk_tokens=20, overlap_tokens=0, min_chunk_tokens=1, context=context)
    sync_documents([doc()], pg_store, chunker, embedder)
    hits = pg_store.search(embedder.embed_query("handbook").tolist(), "handbook", k=5, mode="text")  # in the title only
    assert bool(hits) == context
