#!/usr/bin/env bash
# The main job on the embedded defaults (`make demo`): ingest the sample corpus, evaluate the packaged
# SmolLM2-135M-Instruct with retrieval, fine-tune it with LoRA on the train split, evaluate the tuned
# model the same way, compare the two, publish the tuned model to the local registry, and answer
# questions with citations. Each stage prints how long it took.
set -euo pipefail
PROMPTLY="${PROMPTLY:-.venv/bin/promptly}"
# The base model is evaluated with the settings experiment=demo trains with (two chunks, 512 tokens).
SAME_AS_DEMO=(data.retrieval.k=2 data.max_length=512)
total=$SECONDS

stage() {  # stage NAME COMMAND...: run a command, then say how long it took
  local name=$1 started=$SECONDS
  shift
  printf '\n\033[1m== %s ==\033[0m\n' "$name"
  "$@"
  printf '\033[2m-- %s: %ss\033[0m\n' "$name" $((SECONDS - started))
}

newest_eval() { ls -dt logs/eval/runs/*/ 2>/dev/null | head -1; }

stage "ingest the sample corpus" "$PROMPTLY" ingest
stage "store status" "$PROMPTLY" db status
stage "evaluate the base model (test split)" "$PROMPTLY" eval model=smollm2_135m_instruct "${SAME_AS_DEMO[@]}"
base_eval=$(newest_eval)
stage "fine-tune with LoRA (train split)" "$PROMPTLY" train experiment=demo
stage "evaluate the tuned model (test split)" "$PROMPTLY" eval run_dir=latest
tuned_eval=$(newest_eval)
stage "base against tuned" "$PROMPTLY" eval "compare=[${base_eval%/},${tuned_eval%/}]"
stage "publish the tuned model (local registry)" "$PROMPTLY" publish run_dir=latest publish.promote=true
for question in \
    "How many passphrases can a single driftsync repository hold?" \
    "How much memory does quillmq need at minimum?" \
    "Where does tomlguard store its result cache?"; do
  stage "ask: $question" "$PROMPTLY" ask "$question"
done
printf '\n\033[1mdemo finished in %ss\033[0m (reports under logs/eval/runs, the model under .promptly/registry)\n' \
  $((SECONDS - total))
