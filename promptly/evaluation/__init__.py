"""Evaluation: standard and RAG metrics over answered examples, and the reports that show them.

    result = evaluate_examples(examples, embedder, judge=None, config=MetricConfig())
    write_report(result, out_dir, settings={...}, compare={"base": "runs/base/report.json"})
"""

from promptly.evaluation.metrics import (
    AnswerPerplexity,
    Bleu,
    EvalExample,
    EvalResult,
    MetricConfig,
    Rouge,
    answer_token_nll,
    evaluate_examples,
    sentence_bleu,
)
from promptly.evaluation.rag_metrics import (
    AnswerCoverage,
    AnswerRelevance,
    Faithfulness,
    Judge,
    MeanReciprocalRank,
    RetrievalRecall,
    TextEncoder,
)
from promptly.evaluation.report import ReportFiles, compare_reports, load_report, write_report

__all__ = [
    "AnswerCoverage",
    "AnswerPerplexity",
    "AnswerRelevance",
    "Bleu",
    "EvalExample",
    "EvalResult",
    "Faithfulness",
    "Judge",
    "MeanReciprocalRank",
    "MetricConfig",
    "ReportFiles",
    "RetrievalRecall",
    "Rouge",
    "TextEncoder",
    "answer_token_nll",
    "compare_reports",
    "evaluate_examples",
    "load_report",
    "sentence_bleu",
    "write_report",
]
