"""Evaluation on a user's question file (questions + expected facts, no reference prose): the file format and
its errors, the committed pip_docs question file, and the scores of real answers from the answer path on the
ingested sample corpus (extractive answers from the tiny model's Answerer: nothing is generated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptly.answering import Answerer
from promptly.errors import ConfigError, EmptyInputError, InputNotFoundError
from promptly.evaluation.config import QuestionSubset
from promptly.evaluation.question_file import evaluate_question_file, load_question_file, write_question_report
from promptly.model.config import SamplingConfig
from promptly.model.loading import load_model
from promptly.retrieval import Retriever
from promptly.settings import AnswerStyle, EvidenceSettings
from promptly.store.postgres import PostgresStore

from .conftest import REPO_ROOT, compose, resolved
from .test_train_common import location, tiny_state, train_config  # noqa: F401  (tiny_state: a fixture)

DATA = REPO_ROOT / "benchmarks" / "data"


def write(path: Path, *rows: dict) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_format_subsets_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "q.jsonl",
                 {"id": "a", "question": "Which cipher?", "facts": ["AES-256-GCM"], "page": "d/README.md",
                  "held_out": False},
                 {"question": "Which port?", "facts": ["7070"], "document_id": "d/faq.md"},
                 {"id": "c", "question": "Who founded it?", "facts": [], "answerable": False, "page": None})
    every = load_question_file(path)
    assert [q.id for q in every] == ["a", "line2", "c"]
    assert every[1].page == "d/faq.md" and every[1].held_out and every[1].answerable  # defaults
    assert not every[2].answerable and every[2].page is None
    assert [q.id for q in load_question_file(path, QuestionSubset.held_out)] == ["line2", "c"]
    assert [q.id for q in load_question_file(path, "tuning")] == ["a"]


@pytest.mark.parametrize(("row", "message"), [
    ({"question": "Which port?", "answerable": True}, "needs `facts`"),
    ({"question": "Who?", "facts": [], "answerable": False, "page": "x.md"}, "no `facts` and no `page`"),
    ({"question": "Which port?", "facts": "7070"}, "list of non-empty strings"),
    ({"question": "Which port?", "facts": ["=="]}, "no word to match"),
    ({"question": " ", "facts": ["x"]}, "`question` is missing"),
])
def test_a_bad_line_names_the_file_its_line_and_the_fault(tmp_path: Path, row: dict, message: str) -> None:
    path = write(tmp_path / "q.jsonl", {"question": "fine?", "facts": ["yes"]}, row)
    with pytest.raises(ConfigError, match=rf"q\.jsonl, line 2: .*{message}"):
        load_question_file(path)


def test_missing_file_repeated_id_and_empty_subset(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"questions\.path="):
        load_question_file(tmp_path / "none.jsonl")
    path = write(tmp_path / "q.jsonl", {"id": "x", "question": "a?", "facts": ["a"]},
                 {"id": "x", "question": "b?", "facts": ["b"]})
    with pytest.raises(ConfigError, match="'x' repeats"):
        load_question_file(path)
    path = write(tmp_path / "q.jsonl", {"question": "a?", "facts": ["a"]})
    with pytest.raises(EmptyInputError, match=r"questions\.subset=tuning"):
        load_question_file(path, QuestionSubset.tuning)


def test_pip_docs_question_file_is_complete() -> None:
    """The committed corpus questions: 30+, at least 5 unanswerable, about half held out, every page listed
    in the pages file and every fact stated somewhere in the question file's own terms."""
    questions = load_question_file(DATA / "pip_docs_questions.jsonl")
    pages = {line.strip() for line in (DATA / "pip_docs_pages.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert len(questions) >= 30
    assert sum(not q.answerable for q in questions) >= 5
    assert 0.4 <= sum(q.held_out for q in questions) / len(questions) <= 0.6
    assert {q.page for q in questions if q.answerable} <= pages


@pytest.fixture
def answerer(tmp_path: Path, ingested_url: str, ingested_store: PostgresStore, embedder) -> Answerer:
    cfg = resolved(compose("ask", [f"paths.data_dir={REPO_ROOT / 'sample_data'}",
                                   f"paths.state_dir={tmp_path / 'state'}", "store=postgres",
                                   f"store.url='{ingested_url}'", "model=tiny", "model.tiny.num_hidden_layers=2"]))
    return Answerer(load_model(cfg), Retriever(ingested_store, embedder, k=3), SamplingConfig(max_new_tokens=8),
                    EvidenceSettings(answer_style=AnswerStyle.extractive))


def test_scores_of_real_answers_and_the_report(tmp_path: Path, answerer: Answerer) -> None:
    path = write(tmp_path / "q.jsonl",
                 {"id": "pass", "question": "How many passphrases can a single driftsync repository hold?",
                  "facts": ["16"], "page": "driftsync/cli-reference.md"},
                 {"id": "wrong", "question": "How many passphrases can a single driftsync repository hold?",
                  "facts": ["16", "zanzibar"], "page": "quillmq/README.md"},
                 {"id": "none", "question": "How many people attended the first cronkite user conference?",
                  "facts": [], "answerable": False})
    result = evaluate_question_file(answerer, load_question_file(path))
    rows = {r["id"]: r for r in result.per_example}
    assert rows["pass"]["scores"]["key_fact_recall"] == 1.0  # the quoted sentence states "16"
    assert rows["pass"]["scores"]["citation_hit"] == 1.0
    assert rows["wrong"]["scores"]["key_fact_recall"] == 0.5 and rows["wrong"]["details"]["missing_facts"] == [
        "zanzibar"]
    assert rows["wrong"]["scores"]["citation_hit"] == 0.0  # the page asked for is not the one quoted
    assert rows["none"]["scores"]["abstained"] == 1.0
    assert result.overall["questions"] == 3 and result.overall["answerable"] == 2
    assert result.overall["key_fact_recall"] == 0.75 and result.overall["complete_answers"] == 0.5
    assert result.overall["abstention_rate"] == 1.0 and result.overall["false_abstention_rate"] == 0.0
    json_path, md_path = write_question_report(result, tmp_path / "report", {"model": "tiny"})
    assert json.loads(json_path.read_text())["overall"] == result.overall
    markdown = md_path.read_text()
    assert "| key_fact_recall | 0.7500 |" in markdown and "**Missing:** zanzibar" in markdown


def test_eval_verb_answers_a_question_file(tmp_path: Path, tiny_state: Path, ingested_url: str) -> None:  # noqa: F811
    from promptly.verbs.eval import run as run_eval

    path = write(tmp_path / "q.jsonl",
                 {"id": "pass", "question": "How many passphrases can a single driftsync repository hold?",
                  "facts": ["16"], "page": "driftsync/cli-reference.md", "held_out": True},
                 {"id": "tune", "question": "Which cipher does driftsync use?", "facts": ["AES"],
                  "held_out": False},
                 {"id": "none", "question": "How many people attended the first cronkite user conference?",
                  "facts": [], "answerable": False})
    out = tmp_path / "eval-run"
    overrides = [*location(tmp_path, tiny_state, ingested_url, out), "logger=csv", "model=tiny",
                 "model.tiny.num_hidden_layers=2", "data.max_length=320", "data.retrieval.k=2",
                 "evidence.answer_style=extractive", f"questions.path={path}", "questions.subset=held_out"]
    report = run_eval(train_config(overrides, out, config_name="eval"))
    saved = json.loads((out / "report.json").read_text())
    assert [r["id"] for r in saved["per_example"]] == ["pass", "none"]  # the tuning question left out
    assert saved["overall"] == report["overall"] and saved["overall"]["key_fact_recall"] == 1.0
    assert saved["overall"]["abstention_rate"] == 1.0 and saved["settings"]["answer_style"] == "extractive"
    logged = [p.read_text() for p in out.rglob("metrics.csv")]
    assert logged and "eval/key_fact_recall" in logged[0]
    assert "key_fact_recall" in (out / "report.md").read_text()
    with pytest.raises(Exception, match="questions"):
        train_config([*overrides, "questions.pth=x"], out, config_name="eval")
