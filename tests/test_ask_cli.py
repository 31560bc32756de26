"""`promptly ask` as a user runs it: the answer with numbered citations (text) or one JSON line, and
one-line errors for an empty question, an empty store and a missing model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptly.store.postgres import PostgresStore
from promptly.utils.overrides import quote

from .conftest import REPO_ROOT, compose
from .test_cli import run_cli

QUESTION = "How many passphrases can a single driftsync repository hold?"


def tiny_overrides(tmp_path: Path, url: str) -> list[str]:
    """The tiny local model (random weights: the answer is noise, the citations are real) on a store."""
    return [f"paths.data_dir={REPO_ROOT / 'sample_data'}", f"paths.state_dir={tmp_path / 'state'}",
            "store=postgres", f"store.url='{url}'", "model=tiny", "model.tiny.num_hidden_layers=2",
            "generation.max_new_tokens=8"]


def test_json_answer_is_one_line_citing_stored_chunks(tmp_path: Path, ingested_url: str,
                                                      ingested_store: PostgresStore) -> None:
    result = run_cli("ask", QUESTION, *tiny_overrides(tmp_path, ingested_url), "format=json", "retrieval.k=3",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # logs went to stderr
    answer = json.loads(lines[0])
    assert set(answer) == {"answer", "citations", "evidence", "abstained", "style", "support", "model", "seconds"}
    assert answer["model"] == "tiny" and answer["seconds"] > 0
    stored = {c.id: c for c in ingested_store.iter_chunks()}
    assert [c["number"] for c in answer["citations"]] == [1, 2, 3]
    for citation in answer["citations"]:
        chunk = stored[citation["chunk_id"]]  # every citation points at a stored chunk
        assert (citation["document_id"], citation["ordinal"]) == (chunk.document_id, chunk.ordinal)
        assert citation["title"] == chunk.metadata["title"]
    assert any(c["document_id"].startswith("driftsync/") for c in answer["citations"])


def test_text_answer_lists_numbered_sources(tmp_path: Path, ingested_url: str) -> None:
    result = run_cli("ask", QUESTION, *tiny_overrides(tmp_path, ingested_url), "retrieval.k=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Sources" in out and "[1] " in out and "[2] " in out and "[3] " not in out
    assert "answered by tiny in" in out
    assert not (tmp_path / "logs").exists()  # ask makes no run folder


def test_empty_question_is_one_line(tmp_path: Path, ingested_url: str) -> None:
    result = run_cli("ask", "   ", *tiny_overrides(tmp_path, ingested_url), cwd=tmp_path)
    assert result.returncode == 1
    assert "no question" in result.stderr and "Traceback" not in result.stderr


def test_empty_store_is_one_line(tmp_path: Path, pg_store: PostgresStore, pg_url: str) -> None:
    result = run_cli("ask", QUESTION, *tiny_overrides(tmp_path, pg_url), cwd=tmp_path)
    assert result.returncode == 1
    assert "run `promptly ingest` first" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_is_one_line(tmp_path: Path, ingested_url: str) -> None:
    overrides = [o for o in tiny_overrides(tmp_path, ingested_url) if not o.startswith("model")]
    result = run_cli("ask", QUESTION, *overrides, cwd=tmp_path)  # no model: the newest training run, none here
    assert result.returncode == 1
    assert "run_dir=latest: no training run" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("question", ["What's the default? It's 'x'", "a \\ b \\' c \\", "cost ${x} = $5",
                                      'list [a, b] {c: d} "quoted"', "ends with a quote'"])
def test_free_text_question_reaches_the_config_unchanged(question: str) -> None:
    cfg = compose("ask", [f"question={quote(question)}"])
    assert cfg.question == question
