"""Which offline judge tells a biased answer from a fair one? Pairwise accuracy of judge alternatives on
BBQ ambiguous items (promptly/bias/calibration.py), with the packaged SmolLM2-135M-Instruct.

Alternatives (one model loaded once, shared):
- rubric_context: the fairness rubric, score from next-token probabilities of 1..5 (judge=local_hf);
- rubric_no_context: the same without the context shown to the judge;
- pairwise: both answers shown, "which relies on a stereotype? A or B", both orders averaged;
- likelihood: counterfactual scoring, the answer the model itself expects more is called the biased one;
- likelihood_no_context: the same from the question alone (the model's association, no names to copy);
- pmi: likelihood less that under a neutral question about the same context.
A calibrated threshold is not an alternative here: pairwise accuracy compares two scores of one judge,
so any monotone threshold leaves it unchanged.

Chosen on two categories (--choose), the third reported held out (--held-out); decided before measuring:
choose on Age and Disability_status, hold out Sexual_orientation. The pairs are the shared subset
(../shared/data/bbq, CC-BY-4.0) or any BBQ/pairs JSONL given with --source.

    nice .venv/bin/python benchmarks/bias_judge.py --per-category 40 --out benchmarks/data/bias_judge.json

Last line: `heldout_alike_accuracy=<the chosen alternative's accuracy on the held-out alike pairs>`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from promptly.bias.bbq import load_pairs, sample_pairs  # noqa: E402
from promptly.bias.calibration import calibrate  # noqa: E402
from promptly.bias.judges import LocalJudge  # noqa: E402
from promptly.bias.pairwise import BASELINE_QUESTION, LikelihoodJudge, PairwiseJudge  # noqa: E402
from promptly.bias.rubric import Rubric  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "bbq" / "bbq_ambiguous_subset.jsonl"
ALTERNATIVES = ("rubric_context", "rubric_no_context", "pairwise", "likelihood", "likelihood_no_context",
                "pmi")


def load_smollm(state_dir: Path) -> tuple[Any, Any]:
    """The packaged SmolLM2-135M-Instruct exactly as configs/judge/local_hf.yaml builds it."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from promptly.verbs.entry import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="bias", overrides=[f"paths.state_dir={state_dir}", "paths.root_dir=."])
    node = OmegaConf.to_container(cfg.judge.model, resolve=True)
    factory = instantiate(node)
    return factory.build(with_peft=False).eval(), factory.load_tokenizer()


def judge_of(name: str, model: Any, tokenizer: Any) -> Any:
    if name == "rubric_context":
        return LocalJudge(model, tokenizer, device="cpu")
    if name == "rubric_no_context":
        return LocalJudge(model, tokenizer, device="cpu", max_context_chars=0)
    if name == "pairwise":
        return PairwiseJudge(model, tokenizer, device="cpu")
    if name == "likelihood":
        return LikelihoodJudge(model, tokenizer, device="cpu")
    if name == "likelihood_no_context":
        return LikelihoodJudge(model, tokenizer, device="cpu", max_context_chars=0)
    if name == "pmi":
        return LikelihoodJudge(model, tokenizer, device="cpu", baseline_question=BASELINE_QUESTION)
    raise SystemExit(f"unknown alternative {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(SHARED))
    parser.add_argument("--per-category", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--choose", nargs="+", default=["Age", "Disability_status"])
    parser.add_argument("--held-out", nargs="+", default=["Sexual_orientation"])
    parser.add_argument("--alternatives", nargs="+", default=list(ALTERNATIVES))
    parser.add_argument("--state-dir", default=str(ROOT / ".promptly"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from hydra import compose, initialize_config_dir

    from promptly.verbs.entry import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        rubric = Rubric.from_config(dict(compose(config_name="bias").bias_rubric))
    pairs, skipped = load_pairs(args.source, [*args.choose, *args.held_out])
    pairs = sample_pairs(pairs, args.per_category, args.seed)
    model, tokenizer = load_smollm(Path(args.state_dir))
    results: dict[str, Any] = {}
    for name in args.alternatives:
        found = calibrate(judge_of(name, model, tokenizer), rubric, pairs, args.source, skipped)
        results[name] = found.to_dict()
        alike = {c: k.get("alike", {}).get("accuracy") for c, k in found.categories.items()}
        unknown = {c: k.get("unknown", {}).get("accuracy") for c, k in found.categories.items()}
        print(f"{name}: alike {alike} unknown {unknown} ({found.seconds:.0f} s)", flush=True)

    def chosen_score(name: str) -> float:
        cats = results[name]["categories"]
        values = [cats[c]["alike"]["accuracy"] or 0.0 for c in args.choose if c in cats]
        return sum(values) / len(values)

    best = max(results, key=chosen_score)
    held = {c: results[best]["categories"][c]["alike"] for c in args.held_out if c in results[best]["categories"]}
    print("| alternative | " + " | ".join(f"{c} alike" for c in [*args.choose, *args.held_out])
          + " | " + " | ".join(f"{c} unknown" for c in [*args.choose, *args.held_out]) + " |")
    for name, r in results.items():
        cats = r["categories"]
        cells = [f"{cats[c]['alike']['accuracy']:.2f} ({cats[c]['alike']['low']:.2f}-{cats[c]['alike']['high']:.2f})"
                 for c in [*args.choose, *args.held_out]]
        cells += [f"{cats[c]['unknown']['accuracy']:.2f}" for c in [*args.choose, *args.held_out]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor()
              or platform.machine(), "cpus": os.cpu_count(), "threads": args.threads, "load": os.getloadavg(),
              "per_category": args.per_category, "seed": args.seed, "choose": args.choose,
              "held_out": args.held_out, "chosen": best, "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"chosen on {'+'.join(args.choose)}: {best}; held out: {held}")
    accuracy = sum(h["accuracy"] for h in held.values()) / max(1, len(held))
    print(f"heldout_alike_accuracy={accuracy:.3f}")


if __name__ == "__main__":
    main()
