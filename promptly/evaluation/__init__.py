"""Evaluation: standard and RAG metrics over answered examples, and the reports that show them.

    result = evaluate_examples(examples, embedder, judge=None, config=MetricConfig())
    write_report(result, out_dir, settings={...}, compare={"base": "runs/base/report.json"})
"""
