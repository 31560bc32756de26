"""Ingest of text Postgres cannot take: a NUL past the binary sniff of a text file, and a NUL or a lone UTF-16
surrogate in a JSONL record (text, title, id, metadata) are stored cleaned by promptly.textsafe's rule, never a
DataError or an encoding error; a file that starts with NUL bytes is still refused as binary."""

from __future__ import annotations

import json
from pathlib import Path

from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.sync import sync_documents
from promptly.store.postgres import PostgresStore


def test_ingest_stores_nul_and_surrogate_text_cleaned(tmp_path: Path, pg_store: PostgresStore,
                                                      embedder) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    padding = "The queue retries every message three times. " * 200  # past the 8 KB binary sniff
    (docs / "late-nul.txt").write_text(padding + "a NUL\x00 here and the end.", encoding="utf-8")
    record = {"id": "rec\u0000one", "title": "T\ud800", "text": "surrogate \ud800 and NUL \u0000 in a record",
              "metadata": {"team\u0000": "ops \udfff"}}
    (docs / "records.jsonl").write_text(json.dumps(record) + "\n", encoding="ascii")  # escapes, as JSON writers do
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02 not text")

    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
    report = sync_documents(load_source(SourceConfig(path=str(docs)), chunker.fingerprint()), pg_store, chunker,
                            embedder)

    assert set(pg_store.document_hashes()) == {"late-nul.txt", "recone"}
    assert [(f.path, f.reason) for f in report.failed] == [("binary.txt", "binary content (NUL bytes) in a text file")]
    chunks = list(pg_store.iter_chunks())
    text = "\n".join(c.content for c in chunks)
    assert "\x00" not in text and "a NUL here and the end." in text
    assert "surrogate \ufffd and NUL  in a record" in text
    row = pg_store.conn.execute("select title, metadata from documents where id = 'recone'").fetchone()
    assert row is not None and row[0] == "T\ufffd" and row[1]["team"] == "ops \ufffd"
    assert pg_store.existing_chunk_ids([c.id for c in chunks]) == {c.id for c in chunks}

    again = sync_documents(load_source(SourceConfig(path=str(docs)), chunker.fingerprint()), pg_store, chunker,
                           embedder)  # ids and hashes are those of the stored text: nothing changes
    assert not again.added and not again.updated and not again.deleted, again


def test_qa_file_with_nul_and_surrogates_loads_cleaned(tmp_path: Path, pg_store: PostgresStore,
                                                       embedder) -> None:  # type: ignore[no-untyped-def]
    from promptly.ingest.qa import SplitConfig, load_qa_pairs

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "queue.md").write_text("# Queue\n\nThe queue retries every message three times.", encoding="utf-8")
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
    assert sync_documents(load_source(SourceConfig(path=str(docs)), chunker.fingerprint()), pg_store, chunker,
                          embedder).ok
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "How often\u0000 does the queue retry \ud800?",
                              "answer": "Three\u0000 times \udfff.", "document_id": "queue.md"}) + "\n",
                  encoding="ascii")
    report = load_qa_pairs(qa, pg_store, embedder, SplitConfig())
    assert not report.failed and report.loaded == 1, report
    (pair,) = list(pg_store.iter_qa_pairs())
    assert (pair.question, pair.answer) == ("How often does the queue retry \ufffd?", "Three times \ufffd.")
    assert pair.chunk_ids  # linked to its gold chunk through an embedding of the cleaned answer
    again = load_qa_pairs(qa, pg_store, embedder, SplitConfig())  # the same id: nothing new, nothing deleted
    assert not again.failed and len(list(pg_store.iter_qa_pairs())) == 1


def test_retrieval_takes_questions_with_nul_and_lone_surrogates(ingested_store: PostgresStore,
                                                                embedder) -> None:  # type: ignore[no-untyped-def]
    """`promptly ask`, eval and the datamodule retrieve through Retriever: a question from a file or argv with a
    NUL or an undecodable byte (surrogateescape) still finds its chunks."""
    from promptly.retrieval import Retriever

    retriever = Retriever(ingested_store, embedder, k=3)
    clean = retriever.search(["How do I configure quillmq retries?"])[0]
    hostile = retriever.search(["How do I\x00 configure quillmq retries?\udcff"])[0]
    assert len(hostile) == 3 and hostile[0]["document_id"] == clean[0]["document_id"]
