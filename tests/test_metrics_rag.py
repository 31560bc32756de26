"""RAG metrics on hand-built cases whose right score is known, with the packaged MiniLM embedder."""

from __future__ import annotations

import pytest

from promptly.evaluation import rag_metrics as rag
from promptly.evaluation.metrics import EvalExample, MetricConfig, evaluate_examples
from promptly.utils import text

CONTEXT = [
    "QuillMQ brokers listen on port 5672 for client connections. The admin API listens on port 15672 "
    "and is disabled by default.",
    "Messages are delivered at least once. Consumers must acknowledge each message within 30 seconds, "
    "or it is redelivered.",
    "Downgrading is not supported once the data directory has been upgraded with `quillctl upgrade-data`.",
]
QUESTION = "Which port do QuillMQ clients connect to?"
REFERENCE = CONTEXT[0]


@pytest.fixture(scope="module")
def enc(embedder) -> rag.CachedEncoder:  # type: ignore[no-untyped-def]
    return rag.CachedEncoder(embedder)


def faith(enc: rag.CachedEncoder, answer: str, contexts: list[str] = CONTEXT) -> rag.FaithfulnessScore:
    return rag.faithfulness([answer], [contexts], enc)[0]


# -- faithfulness -------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    "QuillMQ brokers listen on port 5672 for client connections.",  # copied
    "Clients connect to the QuillMQ broker on port 5672.",  # paraphrased
    "A consumer has 30 seconds to acknowledge a message before it is redelivered.",
    "You cannot downgrade after running quillctl upgrade-data.",  # negated like the context
])
def test_answers_grounded_in_the_context_are_faithful(enc: rag.CachedEncoder, answer: str) -> None:
    score = faith(enc, answer)
    assert score.score == 1.0, score
    assert score.invented_tokens == ()


@pytest.mark.parametrize(("answer", "invented"), [
    ("QuillMQ brokers listen on port 5673 for client connections.", "5673"),  # a different port
    ("Start the broker with --enable-admin to turn on the admin API on port 15672.", "--enable-admin"),
    ("Set QUILLMQ_ADMIN=1 to enable the admin API.", "quillmq_admin"),
])
def test_invented_numbers_flags_and_identifiers_are_not_faithful(
    enc: rag.CachedEncoder, answer: str, invented: str,
) -> None:
    score = faith(enc, answer)
    assert score.score == 0.0
    assert invented in score.invented_tokens
    assert score.unsupported == (answer,)


def test_a_contradiction_by_negation_is_not_faithful(enc: rag.CachedEncoder) -> None:
    answer = "Downgrading is supported after the data directory has been upgraded with `quillctl upgrade-data`."
    assert faith(enc, answer).score == 0.0
    assert rag.faithfulness([answer], [CONTEXT], enc, check_negation=False)[0].score == 1.0


def test_off_topic_answer_is_not_faithful(enc: rag.CachedEncoder) -> None:
    assert faith(enc, "Bananas are a good source of potassium.").score == 0.0


def test_faithfulness_is_the_share_of_supported_sentences(enc: rag.CachedEncoder) -> None:
    answer = "QuillMQ brokers listen on port 5672 for client connections. The admin API listens on port 8443."
    score = faith(enc, answer)
    assert (score.score, score.sentences, score.supported) == (0.5, 2, 1)
    assert score.unsupported == ("The admin API listens on port 8443.",)
    assert score.invented_tokens == ("8443",)


def test_faithfulness_without_context_or_answer_is_zero(enc: rag.CachedEncoder) -> None:
    assert faith(enc, "QuillMQ brokers listen on port 5672.", contexts=[]).score == 0.0
    assert faith(enc, "").score == 0.0
    assert faith(enc, "   \n").score == 0.0


# -- retrieval ----------------------------------------------------------------------------------------


def test_retrieval_that_misses_the_gold_chunk_scores_zero() -> None:
    (score,) = rag.retrieval([["a", "b", "c"]], [["gold"]], ks=(1, 3))
    assert score.recall == {1: 0.0, 3: 0.0}
    assert score.reciprocal_rank == 0.0


def test_gold_at_rank_two() -> None:
    (score,) = rag.retrieval([["a", "gold", "c"]], [["gold"]], ks=(1, 3, 5))
    assert score.reciprocal_rank == 0.5
    assert score.recall == {1: 0.0, 3: 1.0, 5: 1.0}


def test_recall_counts_each_gold_chunk_and_duplicates_once() -> None:
    (score,) = rag.retrieval([["g1", "g1", "x", "y", "g2"]], [["g1", "g2"]], ks=(1, 3, 4))
    assert score.recall == {1: 0.5, 3: 0.5, 4: 1.0}  # the duplicate g1 does not push g2 out of the top 4
    assert score.reciprocal_rank == 1.0
    (no_gold,) = rag.retrieval([["a"]], [[]])
    assert no_gold.reciprocal_rank is None and set(no_gold.recall.values()) == {None}


def test_retrieval_metrics_average_over_examples_and_processes() -> None:
    retrieved, gold = [["a", "g"], ["g"], ["x"], ["y"]], [["g"], ["g"], ["g"], []]
    mrr, rank1 = rag.MeanReciprocalRank(), rag.MeanReciprocalRank()
    mrr.update(retrieved[:2], gold[:2])
    rank1.update(retrieved[2:], gold[2:])
    mrr.merge_state(rank1)  # the distributed reduction of the declared states
    assert float(mrr.compute()) == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # the gold-less example is skipped
    recall = rag.RetrievalRecall(k=1)
    recall.update(retrieved, gold)
    assert float(recall.compute()) == pytest.approx(1 / 3)


# -- answer relevance ---------------------------------------------------------------------------------


def test_on_topic_answer_is_more_relevant_than_off_topic(enc: rag.CachedEncoder) -> None:
    on, near, off, empty = rag.answer_relevance(
        [QUESTION] * 4,
        ["Clients connect to the QuillMQ broker on port 5672.", "The admin API is disabled by default.",
         "Bananas are a good source of potassium.", ""], enc)
    assert on.cosine > 0.7
    assert on.cosine > near.cosine > off.cosine
    assert off.cosine < 0.2
    assert empty.cosine == 0.0


class RecordingJudge:
    """A deterministic judge: questions about ports for answers that mention one, fruit otherwise."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if "port" in prompt.split("Answer:")[1]:
            return "1. Which port do QuillMQ clients use?\n2) On which port does the QuillMQ broker listen?\n\n"
        return "- Which fruit is rich in potassium?"


def test_judged_relevance_compares_generated_questions_with_the_question(enc: rag.CachedEncoder) -> None:
    judge = RecordingJudge()
    on, off, noncommittal, empty = rag.answer_relevance(
        [QUESTION] * 4,
        ["Clients connect to the QuillMQ broker on port 5672.", "Bananas are a good source of potassium.",
         "I don't know.", ""], enc, judge=judge, n_questions=2)
    assert on.generated_questions == ("Which port do QuillMQ clients use?",
                                      "On which port does the QuillMQ broker listen?")
    assert on.judged is not None and on.judged > 0.8
    assert off.judged is not None and off.judged < 0.3
    assert noncommittal.judged == 0.0 and empty.judged == 0.0
    assert len(judge.prompts) == 2  # noncommittal and empty answers never reach the judge
    assert "Write 2 different questions" in judge.prompts[0]
    assert "Clients connect to the QuillMQ broker on port 5672." in judge.prompts[0]


def test_parse_questions_strips_list_markers() -> None:
    assert rag.parse_questions("Q1: What?\n\n- Why?\n3. How?\nQuestion 4: When?", 3) == ["What?", "Why?", "How?"]


# -- coverage -----------------------------------------------------------------------------------------


def test_the_reference_itself_covers_everything(enc: rag.CachedEncoder) -> None:
    (score,) = rag.coverage([REFERENCE], [REFERENCE], enc)
    assert (score.semantic, score.lexical, score.combined) == (1.0, 1.0, 1.0)


def test_coverage_of_half_the_reference(enc: rag.CachedEncoder) -> None:
    answer = "Clients connect on port 5672."
    (score,) = rag.coverage([REFERENCE], [answer], enc)
    assert score.semantic == 0.5  # the first of the reference's two sentences
    ref_words = text.content_words(REFERENCE)
    assert score.lexical == pytest.approx(len(ref_words & text.content_words(answer)) / len(ref_words))
    assert score.lexical == pytest.approx(4 / 12)  # client, connect, port, 5672 of 12 content words
    assert score.combined == pytest.approx((0.5 + 4 / 12) / 2)
    assert "15672" in score.missing_words


def test_coverage_of_a_paraphrase_and_of_nothing(enc: rag.CachedEncoder) -> None:
    para, off, empty = rag.coverage(
        [REFERENCE] * 3,
        ["Clients connect to the broker on port 5672; the admin API uses port 15672 and is off by default.",
         "Bananas are yellow.", ""], enc)
    assert para.semantic == 1.0 and 0.5 < (para.lexical or 0) < 1.0
    assert (off.semantic, off.lexical, off.combined) == (0.0, 0.0, 0.0)
    assert (empty.semantic, empty.lexical, empty.combined) == (0.0, 0.0, 0.0)
    (undefined,) = rag.coverage([""], ["anything"], enc)
    assert undefined.combined is None


# -- everything together ------------------------------------------------------------------------------


def _examples() -> list[EvalExample]:
    return [
        EvalExample(QUESTION, REFERENCE, "Clients connect to the QuillMQ broker on port 5672.", CONTEXT,
                    ["c1", "c2", "c3"], ["c1"], id="good"),
        EvalExample(QUESTION, REFERENCE, "QuillMQ brokers listen on port 5673.", CONTEXT,
                    ["c2", "c1"], ["c1"], id="invented"),
        EvalExample(QUESTION, REFERENCE, "", CONTEXT, ["c2", "c3"], ["c1"], id="empty"),
    ]


def test_an_empty_answer_scores_zero_on_every_answer_metric(embedder) -> None:  # type: ignore[no-untyped-def]
    result = evaluate_examples(_examples(), embedder, judge=RecordingJudge())
    empty = result.per_example[2]["scores"]
    answer_metrics = ["bleu", "rouge1", "rouge2", "rougeL", "answer_relevance", "answer_relevance_judged",
                      "coverage", "coverage_semantic", "coverage_lexical", "faithfulness"]
    assert {m: empty[m] for m in answer_metrics} == dict.fromkeys(answer_metrics, 0.0)
    # Retrieval scores judge the retriever, not the answer: the gold chunk was missed here.
    assert (empty["recall@5"], empty["mrr"]) == (0.0, 0.0)


def test_evaluate_examples_matches_the_metric_classes(embedder) -> None:  # type: ignore[no-untyped-def]
    examples = _examples()
    cfg = MetricConfig(recall_ks=(1, 2))
    result = evaluate_examples(examples, embedder, config=cfg)
    questions = [e.question for e in examples]
    answers = [e.prediction for e in examples]
    relevance = rag.AnswerRelevance(embedder)
    coverage = rag.AnswerCoverage(embedder, threshold=cfg.coverage_threshold)
    faithful = rag.Faithfulness(embedder, threshold=cfg.faithfulness_threshold)
    for lo, hi in ((0, 2), (2, 3)):
        relevance.update(questions[lo:hi], answers[lo:hi])
        coverage.update([e.reference for e in examples[lo:hi]], answers[lo:hi])
        faithful.update(answers[lo:hi], [list(e.contexts) for e in examples[lo:hi]])
    assert result.overall["answer_relevance"] == pytest.approx(float(relevance.compute()), abs=1e-6)
    assert result.overall["coverage"] == pytest.approx(float(coverage.compute()), abs=1e-6)
    assert result.overall["faithfulness"] == pytest.approx(float(faithful.compute()), abs=1e-6)
    assert result.overall["faithfulness"] == pytest.approx(1 / 3)
    assert result.overall["mrr"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert result.overall["recall@1"] == pytest.approx(1 / 3)
    assert result.overall["recall@2"] == pytest.approx(2 / 3)
    assert result.per_example[1]["details"]["invented_tokens"] == ["5673"]
    assert "perplexity" not in result.overall  # no example carried answer NLLs
    assert result.config["recall_ks"] == (1, 2)


def test_perplexity_pools_answer_tokens_over_examples(embedder) -> None:  # type: ignore[no-untyped-def]
    import math

    examples = [EvalExample("q", "a", "a", answer_nll=2.0, answer_tokens=1),
                EvalExample("q", "a b c", "a", answer_nll=3.0, answer_tokens=3)]
    result = evaluate_examples(examples, embedder)
    assert result.overall["perplexity"] == pytest.approx(math.exp(5.0 / 4))
    assert result.per_example[0]["scores"]["perplexity"] == pytest.approx(math.exp(2.0))


def test_no_examples_give_an_empty_result(embedder) -> None:  # type: ignore[no-untyped-def]
    result = evaluate_examples([], embedder)
    assert result.overall == {} and result.per_example == []


def test_metric_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="recall_ks"):
        MetricConfig(recall_ks=(0,))
    with pytest.raises(ValueError, match="coverage_threshold"):
        MetricConfig(coverage_threshold=2.0)


# -- text helpers -------------------------------------------------------------------------------------


def test_sentence_splitting_keeps_decimals_versions_and_abbreviations() -> None:
    assert text.split_sentences("Use e.g. the --port flag. Version 4.2.0 is current! Is it 3.5 s? Yes.") == [
        "Use e.g. the --port flag.", "Version 4.2.0 is current!", "Is it 3.5 s?", "Yes."]
    markdown = "## Tools\n\n- `emberd` – the server\n  daemon.\n- `emberctl` – the client.\n\n| a | b |\n|---|---|"
    assert text.split_sentences(markdown) == ["Tools", "`emberd` – the server daemon.", "`emberctl` – the client.",
                                              "a b"]


def test_critical_tokens_are_numbers_flags_identifiers_and_rare_words() -> None:
    vocab = {"the", "broker", "listens", "on", "port", "run", "with"}
    found = text.critical_tokens("The broker listens on port 1,024. Run `quillctl start` with --verbose "
                                 "and QUILL_HOME set; JWT tokens are idempotent.", vocab)
    assert {"1024", "quillctl", "--verbose", "quill_home", "jwt", "idempot", "start"} <= found
    assert not {"broker", "listen", "port", "the"} & found
