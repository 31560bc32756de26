#!/usr/bin/env bash
# Bring your own docs (`make byod DOCS=<folder> QUESTIONS=<file>`): ingest a folder of documents into a
# home of its own, generate QA pairs from it with the packaged SmolLM2 (answer-first, offline), evaluate the
# base model on your question file (generative and extractive answers), fine-tune with experiment=byod,
# evaluate the tuned model the same way, and put the three side by side. Each stage prints how long it took.
#   scripts/byod.sh DOCS QUESTIONS [HOME]
# DOCS: a folder of .md/.rst/.txt/.html/.pdf pages; QUESTIONS: a JSONL of {id, question, facts, page,
# held_out, answerable} (promptly/evaluation/question_file.py); HOME: where the store, runs and reports go
# (default .promptly-byod). Only the held-out questions are scored (SUBSET=all to score every one).
set -euo pipefail
DOCS=$(realpath "${1:?usage: scripts/byod.sh DOCS QUESTIONS [HOME]}")
QUESTIONS=$(realpath "${2:?usage: scripts/byod.sh DOCS QUESTIONS [HOME]}")
export PROMPTLY_HOME=$(realpath -m "${3:-.promptly-byod}")
PROMPTLY="${PROMPTLY:-$(realpath .venv/bin/promptly)}"
SUFFIXES="${SUFFIXES:-[.md,.markdown,.mdx,.rst,.txt,.html,.htm,.pdf]}"
PER_DOCUMENT="${PER_DOCUMENT:-8}"
SUBSET="${SUBSET:-held_out}"
# The base model is evaluated with the settings experiment=byod trains with (two chunks, 512 tokens).
SAME_AS_BYOD=(data.retrieval.k=2 data.max_length=512 "questions.path=$QUESTIONS" "questions.subset=$SUBSET")
mkdir -p "$PROMPTLY_HOME"
total=$SECONDS

stage() {  # stage NAME COMMAND...: run a command, then say how long it took
  local name=$1 started=$SECONDS
  shift
  printf '\n\033[1m== %s ==\033[0m\n' "$name"
  "$@"
  printf '\033[2m-- %s: %ss\033[0m\n' "$name" $((SECONDS - started))
}

newest_eval() { ls -dt "$PROMPTLY_HOME"/logs/eval/runs/*/ 2>/dev/null | head -1; }

stage "ingest $DOCS" "$PROMPTLY" ingest "ingest.source.path=$DOCS" "ingest.source.suffixes=$SUFFIXES" \
  "ingest.qa.path=''"
stage "generate QA pairs (packaged model, answer-first)" "$PROMPTLY" qa generate qa_generator=local_hf \
  "qa.per_document=$PER_DOCUMENT"
stage "evaluate the base model" "$PROMPTLY" eval model=smollm2_135m_instruct "${SAME_AS_BYOD[@]}"
base_eval=$(newest_eval)
stage "evaluate extractive answers (base model)" "$PROMPTLY" eval model=smollm2_135m_instruct \
  "${SAME_AS_BYOD[@]}" evidence.answer_style=extractive
extractive_eval=$(newest_eval)
stage "fine-tune with LoRA on the generated pairs" "$PROMPTLY" train experiment=byod
stage "evaluate the tuned model" "$PROMPTLY" eval run_dir=latest "questions.path=$QUESTIONS" \
  "questions.subset=$SUBSET"
tuned_eval=$(newest_eval)
stage "base, extractive and tuned side by side" "$PROMPTLY" eval \
  "compare=[${base_eval%/},${extractive_eval%/},${tuned_eval%/}]"
printf '\n\033[1mbyod finished in %ss\033[0m (reports under %s/logs/eval/runs)\n' $((SECONDS - total)) \
  "$PROMPTLY_HOME"
