"""Answers that show their evidence, on the ingested sample corpus: sentences are verbatim slices of the cited
chunks, inline markers point at the chunk that supports the sentence they follow, extractive answers are made
of source sentences, an unsupported question abstains without generating; through `ask` (JSON) and the API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai
import pytest
from rich.console import Console

from promptly.answering import Answerer
from promptly.evidence import (
    ABSTENTION,
    candidates,
    display,
    extractive,
    generative,
    plan,
    sentence_spans,
    support_matrix,
)
from promptly.model.config import SamplingConfig
from promptly.model.loading import load_model
from promptly.records import Answer, Citation, Evidence
from promptly.retrieval import Retriever
from promptly.settings import EvidenceSettings
from promptly.store.postgres import PostgresStore
from promptly.verbs.ask import print_answer

from .cloud.promptly_server import ServeThread
from .conftest import REPO_ROOT, compose, resolved
from .serve_fixtures import serve_cfg, serve_db  # noqa: F401  (a fixture)
from .test_cli import run_cli

QUESTION = "How many passphrases can a single driftsync repository hold?"
FACT = "16"  # "A driftsync repository can hold at most 16 passphrases." (sample_data/qa.jsonl)
UNANSWERABLE = "How many people attended the first cronkite user conference?"
MARKER = re.compile(r"\[(\d+)\]")


def tiny_overrides(tmp_path: Path, url: str) -> list[str]:
    return [f"paths.data_dir={REPO_ROOT / 'sample_data'}", f"paths.state_dir={tmp_path / 'state'}",
            "store=postgres", f"store.url='{url}'", "model=tiny", "model.tiny.num_hidden_layers=2",
            "generation.max_new_tokens=8"]


def test_sentences_are_verbatim_slices_that_follow_markdown() -> None:
    text = ("# Limits\n\nA repository holds at most 16\npassphrases. Each one unlocks it, e.g. on a new\n"
            "machine.\n\n- The first item says one thing.\n\n```sh\ndriftsync key add\n```\n"
            "| flag | meaning |\n|------|---------|\n| `-q` | quiet |\n")
    spans = sentence_spans(text)
    sentences = [text[s:e] for s, e in spans]
    assert [display(s) for s in sentences] == [
        "A repository holds at most 16 passphrases.",  # a hard-wrapped sentence joined, kept verbatim
        "Each one unlocks it, e.g. on a new machine.",  # no split after "e.g."
        "The first item says one thing.",  # the list marker left out
        "driftsync key add",  # a code line alone; fences and the heading left out
        "| flag | meaning |", "| `-q` | quiet |",  # table rows, the rule left out
    ]


LEAD_IN = ("Configuration lives in three places.\n\nThere are 3 levels of configuration files:\n\n"
           "- `global`: shared by every user\n  of the machine.\n- `user`: one per user.\n\n"
           "The tool runs on:\n\n```\nLinux and macOS\nPython 3.9 or later\n```\n\n"
           "Later ones override earlier ones:\nthe user file wins.\n\n## Next\n\nSee also:\n\n## Files\n")


def test_a_myst_note_or_tab_is_prose_and_a_code_fence_inside_it_is_code() -> None:
    text = ("```{note}\nThe cache is kept for\n14 days. It can be cleared.\n\n```sh\npip cache purge\n```\n```\n\n"
            "```{tab} Unix\nUser\n: {file}`$HOME/.config/pip/pip.conf`\n```\n\n"
            "```{pip-cli}\n$ pip install --no-deps .\n```\n")
    sentences = [display(text[s:e]) for s, e in sentence_spans(text)]
    assert sentences == ["The cache is kept for 14 days.", "It can be cleared.",  # hard wraps joined: prose
                         "pip cache purge",  # a code block inside the note stays a line of code
                         "User : {file}`$HOME/.config/pip/pip.conf`",  # a definition with its term
                         "$ pip install --no-deps ."]  # an unknown directive is read as code, as before


def test_a_lead_in_sentence_runs_on_over_the_list_or_code_it_introduces() -> None:
    chunk = {"chunk_id": "c1", "document_id": "config.md", "content": LEAD_IN}
    quoted = {display(c.text) for c in candidates([chunk])}
    assert "There are 3 levels of configuration files: `global`: shared by every user of the machine. " \
           "`user`: one per user." in quoted  # the list, its wrapped item joined, markers dropped
    assert "The tool runs on: Linux and macOS; Python 3.9 or later" in quoted  # the code block, fences dropped
    assert {"`user`: one per user.", "Linux and macOS", "Configuration lives in three places."} <= quoted
    assert "Later ones override earlier ones: the user file wins." in quoted  # ":" mid-sentence: unchanged
    assert "See also:" in quoted  # a lead-in with nothing after it but a heading stays a sentence
    for cand in candidates([chunk]):
        assert LEAD_IN[cand.start:cand.end] == cand.text and not cand.text.endswith("\n")  # verbatim slices


def test_extractive_quotes_a_lead_in_with_its_list_and_not_the_items_again(embedder) -> None:
    chunk = {"chunk_id": "c1", "document_id": "config.md", "content": LEAD_IN}
    question = "How many levels of configuration files are there, and which?"
    answer = extractive(question, plan(question, [chunk], embedder, EvidenceSettings(abstain_below=0.0)),
                        EvidenceSettings(abstain_below=0.0, max_sentences=3))
    first = answer.evidence[0]
    assert "levels of configuration files" in first.sentence and "`user`: one per user." in first.sentence
    spans = [(e.start, e.end) for e in answer.evidence]
    assert all(a[1] <= b[0] or b[1] <= a[0] for i, a in enumerate(spans) for b in spans[i + 1:])  # no repeats


def test_a_table_row_is_scored_with_its_column_names_and_each_sentence_with_its_page(embedder) -> None:
    """quillmq's minimum memory is a table row ("| Memory | 2 GB | 8 GB |") whose "minimum" is in the header,
    beside a README sentence that names quillmq and "need": read alone, the README sentence wins; read as
    the prompt shows the row (its column names) and each sentence with its page's title, the row does."""
    docs = REPO_ROOT / "sample_data" / "docs" / "quillmq"
    install = (docs / "install.md").read_text(encoding="utf-8")
    chunks = [{"chunk_id": "a", "document_id": "quillmq/README.md", "title": "quillmq",
               "content": (docs / "README.md").read_text(encoding="utf-8")[:900]},
              {"chunk_id": "b", "document_id": "quillmq/install.md", "title": "Installing quillmq",
               "content": install[: install.index("## Docker")]}]
    question = "How much memory does quillmq need at minimum?"
    settings = EvidenceSettings(abstain_below=0.0, max_sentences=1)
    p = plan(question, chunks, embedder, settings)
    answer = extractive(question, p, settings)
    (best,) = answer.evidence
    assert answer.text == '"Resource: Memory; Minimum: 2 GB; Recommended for production: 8 GB" [2]'
    assert best.sentence.startswith("| Memory") and "2 GB" in best.sentence and best.number == 2
    assert best.sentence == chunks[1]["content"][best.start : best.end]  # still the page's own text
    assert best.shown == "Resource: Memory; Minimum: 2 GB; Recommended for production: 8 GB"  # as read
    alone = support_matrix([question], [c.text for c in p.candidates], embedder)[0]
    assert p.candidates[int(alone.argmax())].text.startswith("quillmq is a small")  # what it was before


def test_text_output_shows_each_supporting_sentence_under_its_source() -> None:
    chunk = "Keys live in the repository. A repository can hold at most 16\npassphrases."
    start = chunk.index("A repository")
    answer = Answer(QUESTION, "At most 16 passphrases. [2]", (
        Citation(1, "c1", "driftsync/README.md", 0, "README", 0.3),
        Citation(2, "c2", "driftsync/cli-reference.md", 11, "CLI reference", 0.2)), "tiny", 1.0,
        evidence=(Evidence(2, "c2", "driftsync/cli-reference.md", chunk[start:], start, len(chunk), 0.8, 0),))
    console = Console(record=True, width=200)
    print_answer(console, answer)
    lines = console.export_text().splitlines()
    source = next(i for i, line in enumerate(lines) if line.strip().startswith("[2] CLI reference"))
    assert "A repository can hold at most 16 passphrases." in lines[source + 1]  # right under its source
    assert not any("16 passphrases." in line for line in lines[1:source])


@pytest.fixture
def sample_chunks(ingested_store: PostgresStore, embedder) -> list:
    return Retriever(ingested_store, embedder, k=3).search([QUESTION])[0]


def test_markers_follow_the_sentences_a_cited_chunk_supports(sample_chunks, embedder) -> None:
    settings = EvidenceSettings()
    evidence_plan = plan(QUESTION, sample_chunks, embedder, settings)
    assert not evidence_plan.abstain
    answer = "A driftsync repository can hold at most 16 passphrases. Bananas ripen faster in a paper bag."
    marked = generative(QUESTION, answer, evidence_plan, embedder, settings)
    first, second = marked.text.split("Bananas", 1)
    numbers = [int(n) for n in MARKER.findall(first)]
    assert len(numbers) == 1 and not MARKER.search(second)  # only the supported sentence is marked
    [ev] = marked.evidence
    chunk = sample_chunks[numbers[0] - 1]
    assert ev.number == numbers[0] and ev.chunk_id == chunk["chunk_id"] and ev.answer_sentence == 0
    assert chunk["content"][ev.start:ev.end] == ev.sentence and FACT in ev.sentence


class _CountingEmbedder:
    """The real embedder, keeping the lists of texts it embeds as documents."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.documents = inner, list[list[str]]()

    def embed_queries(self, texts: list[str]) -> Any:
        return self.inner.embed_queries(texts)

    def embed_documents(self, texts: list[str]) -> Any:
        self.documents.append(list(texts))
        return self.inner.embed_documents(texts)


def test_an_answer_is_scored_on_its_plan_s_sentence_vectors_without_embedding_them_again(sample_chunks,
                                                                                          embedder) -> None:
    counting, settings = _CountingEmbedder(embedder), EvidenceSettings()
    evidence_plan = plan(QUESTION, sample_chunks, counting, settings)
    assert [len(texts) for texts in counting.documents] == [len(evidence_plan.candidates)]
    answer = "A driftsync repository can hold at most 16 passphrases. Bananas ripen faster in a paper bag."
    marked = generative(QUESTION, answer, evidence_plan, counting, settings)
    assert len(counting.documents) == 1  # the plan's vectors served the answer's sentences
    again = generative(QUESTION, answer, replace(evidence_plan, vectors=None), embedder, settings)
    assert marked == again and marked.evidence  # the same markers and evidence as embedding them again


def test_unsupported_question_abstains_without_generating(tmp_path: Path, ingested_url: str,
                                                         ingested_store: PostgresStore, embedder) -> None:
    cfg = resolved(compose("ask", tiny_overrides(tmp_path, ingested_url)))
    answerer = Answerer(load_model(cfg), Retriever(ingested_store, embedder, k=3), SamplingConfig(max_new_tokens=8))
    tokens: list[int] = []
    unsupported, supported = answerer.answer([UNANSWERABLE, QUESTION], on_token=lambda row, t: tokens.append(row))
    assert unsupported.abstained and unsupported.text.startswith(ABSTENTION) and not unsupported.evidence
    assert unsupported.citations  # the sources it looked at are still listed
    assert unsupported.support is not None and unsupported.support < EvidenceSettings().abstain_below
    assert not supported.abstained and supported.support is not None
    assert supported.support >= EvidenceSettings().abstain_below
    assert tokens and set(tokens) == {1}  # only the supported question (index 1) was generated


def test_ask_json_extractive_answer_quotes_cited_sentences(tmp_path: Path, ingested_url: str,
                                                          ingested_store: PostgresStore) -> None:
    result = run_cli("ask", QUESTION, *tiny_overrides(tmp_path, ingested_url), "format=json",
                     "evidence.answer_style=extractive", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["style"] == "extractive" and answer["abstained"] is False
    stored = {c.id: c for c in ingested_store.iter_chunks()}
    citations = {c["number"]: c for c in answer["citations"]}
    quoted = re.findall(r'"(.+?)" \[(\d+)\]', answer["answer"])
    assert len(quoted) == len(answer["evidence"]) >= 1
    for (sentence, number), ev in zip(quoted, answer["evidence"], strict=True):
        assert int(number) == ev["number"] and citations[ev["number"]]["chunk_id"] == ev["chunk_id"]
        assert stored[ev["chunk_id"]].content[ev["start"]:ev["end"]] == ev["sentence"]  # verbatim in its chunk
        assert sentence == display(ev["sentence"])
    assert FACT in answer["answer"]  # the best supporting sentence states the fact


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, serve_db: str) -> Iterator[ServeThread]:  # noqa: F811
    abstain = f"evidence.abstain_below={EvidenceSettings().abstain_below}"  # the default (the fixture's is 0)
    with ServeThread(serve_cfg(tmp_path_factory.mktemp("serve_evidence"), serve_db, abstain)) as s:
        yield s


def test_api_returns_evidence_beside_citations(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    quoted = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUESTION}],
                                            extra_body={"answer_style": "extractive"})
    extra = quoted.model_extra or {}
    content = quoted.choices[0].message.content or ""
    assert extra["evidence"]["content"] == content and FACT in content
    by_number = {c["number"]: c for c in extra["citations"]}
    for ev in extra["evidence"]["sentences"]:
        assert f'"{display(ev["sentence"])}" [{ev["number"]}]' in content
        assert by_number[ev["number"]]["content"][ev["start"]:ev["end"]] == ev["sentence"]
    assert quoted.usage is not None and quoted.usage.completion_tokens == 0  # nothing was generated

    chunks = list(client.chat.completions.create(model="promptly", stream=True,
                                                 messages=[{"role": "user", "content": UNANSWERABLE}]))
    last = [c for c in chunks if c.choices][-1].model_extra or {}
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert last["evidence"]["abstained"] is True and streamed.startswith(ABSTENTION)
    assert last["evidence"]["content"] == streamed and last["citations"]

    generated = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUESTION}])
    evidence = (generated.model_extra or {})["evidence"]
    assert evidence["answer_style"] == "generative" and not evidence["abstained"]
    assert evidence["content"] == generated.choices[0].message.content and evidence["sentences"]
    assert generated.usage is not None and generated.usage.completion_tokens >= 1
