"""Bias detection: a fairness rubric scored by judges, counterfactual probes answered through the RAG
answer path, a data-balance check of the store, a report, and a callback that watches while training."""
