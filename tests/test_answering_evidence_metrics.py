"""The evidence metrics on real answers' shapes: key-fact recall from a question file (no reference prose),
key terms from a reference, citation hit rate, and abstention split by whether the question is answerable."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptly.errors import ConfigError
from promptly.evaluation.evidence_metrics import fact_recall, key_terms, load_fact_questions, score_answer, summarize
from promptly.records import Answer, Citation, Evidence


def answer(text: str, evidence: tuple[Evidence, ...] = (), abstained: bool = False) -> Answer:
    cites = (Citation(1, "c1", "driftsync/cli-reference.md", 3, "CLI", 0.5),
             Citation(2, "c2", "emberdb/faq.md", 0, "FAQ", 0.4))
    return Answer("q", text, cites, "tiny", 0.1, evidence=evidence, abstained=abstained)


def sentence(text: str, number: int = 1, document_id: str = "driftsync/cli-reference.md") -> Evidence:
    return Evidence(number, f"c{number}", document_id, text, 0, len(text), 0.6)


def test_question_file_and_fact_recall(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text('{"question": "Which cipher?", "facts": ["AES-256-GCM", "no unencrypted mode"], '
                    '"document_id": "driftsync/README.md"}\n\n{"question": "Who founded it?", "facts": []}\n')
    answerable, unanswerable = load_fact_questions(path)
    assert answerable.answerable and answerable.document_id == "driftsync/README.md"
    assert not unanswerable.answerable
    assert fact_recall("Repositories use aes-256-gcm encryption.", answerable.facts) == 0.5
    assert fact_recall("It uses AES-256-GCM; there is no unencrypted mode.", answerable.facts) == 1.0
    assert fact_recall("anything", ()) is None
    path.write_text('{"question": "x", "facts": "AES"}\n')
    with pytest.raises(ConfigError, match=r"questions\.jsonl:1"):
        load_fact_questions(path)


def test_key_terms_leave_out_what_the_question_says() -> None:
    terms = key_terms("A driftsync repository can hold at most 16 passphrases.",
                      "How many passphrases can a single driftsync repository hold?")
    assert terms == ["16"]  # the rest repeats the question (stemmed: passphrases = passphrase)


def test_scores_citation_hits_and_abstention_rates() -> None:
    facts = ["16"]
    good = score_answer(answer("At most 16 [1].", (sentence("It can hold at most 16 passphrases."),)), facts,
                        "driftsync/cli-reference.md")
    assert (good.fact_recall, good.evidence_fact_recall, good.citation_hit, good.retrieval_hit) == (1, 1, 1, 1)
    wrong_page = score_answer(answer("Seven.", (sentence("Port 7 is used.", 2, "emberdb/faq.md"),)), facts,
                              "driftsync/cli-reference.md")
    assert (wrong_page.fact_recall, wrong_page.citation_hit, wrong_page.retrieval_hit) == (0, 0, 1)
    gave_up = score_answer(answer("The sources do not say (no retrieved sentence answers the question).",
                                  abstained=True), facts, "driftsync/cli-reference.md")
    assert gave_up.abstained == 1 and gave_up.fact_recall == 0 and gave_up.citation_hit == 0
    marker_only = score_answer(answer("Exit code 5 [2]."), ["2"], None)
    assert marker_only.fact_recall == 0  # a marker is not a fact
    refused = score_answer(answer("The sources do not say.", abstained=True), [], None)
    answered = score_answer(answer("Somebody."), [], None)
    summary = summarize([good, wrong_page, gave_up, refused, answered], [True, True, True, False, False])
    assert summary["abstention_rate"] == 0.5 and summary["false_abstention_rate"] == pytest.approx(1 / 3)
    assert summary["key_fact_recall"] == pytest.approx(1 / 3) and summary["citation_hit"] == pytest.approx(1 / 3)
