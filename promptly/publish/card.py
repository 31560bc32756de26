"""The model card (README.md of each version): Hub front matter, then what the model is, how it was made,
how it scored, what data it saw, and what it is for. Every number comes from the run's own files; the whole
card passes through redaction, so no secret in a config or the environment can reach it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from promptly.evaluation.report import ordered_metrics
from promptly.metrics_catalog import lookup
from promptly.publish.config import CardConfig
from promptly.publish.export import ADAPTER_DIR, ExportedModel
from promptly.publish.selection import Evaluation
from promptly.utils.markdown import markdown_table
from promptly.utils.redact import redact_text, redacted_container

BIAS_HOOK = "<!-- promptly:bias-summary -->"
"""Where the bias evaluation's summary goes once there is one (see bias_summary)."""


@dataclass(frozen=True)
class DataSnapshot:
    """What the store held when the version was published."""

    documents: int
    chunks: int
    qa_pairs: int
    content_hash: str
    """SHA-256 over every document's id and content hash and every QA pair's id, question and answer."""
    backend: str


@dataclass(frozen=True)
class CardInputs:
    """Everything the card is written from."""

    repo_id: str
    version: str
    run_dir: Path
    run_config: DictConfig
    evaluation: Evaluation
    exported: ExportedModel
    data: DataSnapshot
    selection: str
    """How the run was chosen, in one line."""
    card: CardConfig
    local_repo: str | None = None
    """The repository's folder in the local registry (the card then loads the tag's snapshot), None on the Hub."""


def bias_summary(run_dir: Path, evaluation: Evaluation) -> str | None:
    """The bias evaluation's summary for the card; None until promptly evaluates bias (a later issue)."""
    return None


def base_origin(meta: Mapping[str, Any]) -> str:
    """Where the base model truly came from, in one line."""
    if meta.get("tiny") is not None:
        t = meta["tiny"]
        return (f"built locally by promptly, not from the Hub: a Llama-style model with {t.get('num_hidden_layers')} "
                f"layers, hidden size {t.get('hidden_size')}, random initial weights (seed {t.get('init_seed')}), "
                f"and a byte-level BPE tokenizer of {t.get('vocab_size')} tokens trained on the corpus")
    if meta.get("base_origin"):
        return str(meta["base_origin"])
    revision = f" at revision {meta['revision']}" if meta.get("revision") else ""
    return f"the Hugging Face Hub model {meta.get('base_model')}{revision}"


def front_matter(inputs: CardInputs) -> dict[str, Any]:
    exported, meta = inputs.exported, inputs.exported.meta
    data: dict[str, Any] = {
        "library_name": "peft" if exported.layout == "adapter" else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["promptly", "rag", str(meta.get("peft", "full"))],
        "language": list(inputs.card.language),
    }
    if exported.base_loadable_by_name:
        data["base_model"] = str(meta.get("base_model"))
    if inputs.card.license:
        data["license"] = inputs.card.license
    return data


def _select(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value


def hyperparameters(cfg: DictConfig, meta: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The settings that shaped the weights, in reading order (unset ones left out)."""
    rows: list[tuple[str, Any]] = [("method", meta.get("peft", _select(cfg, "model.peft.method")))]
    if meta.get("adapter_only"):
        rows += [(f"LoRA {k}", _select(cfg, f"model.peft.{k}")) for k in ("r", "alpha", "dropout", "target_modules")]
    optimizer = str(_select(cfg, "optim._target_") or "").rsplit(".", 1)[-1]
    scheduler = str(_select(cfg, "scheduler._target_") or "").rsplit(".", 1)[-1]
    rows += [("optimizer", optimizer), ("learning rate", _select(cfg, "optim.lr")),
             ("weight decay", _select(cfg, "optim.weight_decay")), ("scheduler", scheduler),
             ("warm-up ratio", _select(cfg, "scheduler.warmup_ratio")), ("batch size", _select(cfg, "data.batch_size")),
             ("gradient accumulation", _select(cfg, "trainer.accumulate_grad_batches")),
             ("max epochs", _select(cfg, "trainer.max_epochs")), ("max steps", _select(cfg, "trainer.max_steps")),
             ("max length (tokens)", _select(cfg, "data.max_length")), ("precision", _select(cfg, "trainer.precision")),
             ("retrieved chunks (k)", _select(cfg, "data.retrieval.k")),
             ("retrieval mode", _select(cfg, "data.retrieval.mode")), ("seed", _select(cfg, "seed"))]
    return [(k, v) for k, v in rows if v not in (None, "", -1)]


def evaluation_table(evaluation: Evaluation) -> str:
    """The headline table: every overall metric of the report, its direction and what it measures."""
    rows = []
    for name in ordered_metrics(list(evaluation.metrics)):
        fact = lookup(name)
        arrow = ("↑" if fact.higher_is_better else "↓") if fact else ""
        rows.append((name, f"{evaluation.metrics[name]:.4f}", arrow, fact.description if fact else ""))
    return markdown_table(["metric", "value", "better", "what it measures"], rows, align="lrcl")


def how_to_load(inputs: CardInputs) -> str:
    meta, version = inputs.exported.meta, inputs.version
    if inputs.local_repo:  # a registry folder: the tag file names the snapshot folder of the version
        head = (f"from pathlib import Path\n\nrepo = Path(\"{inputs.local_repo}\")\n"
                f"source = repo / \"snapshots\" / (repo / \"refs/tags/{version}\").read_text().strip()\n")
        where = "source"
    else:
        head, where = "", f"\"{inputs.repo_id}\", revision=\"{version}\""
    if inputs.exported.layout == "adapter":
        code = (f"from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n{head}\n"
                f"base = AutoModelForCausalLM.from_pretrained(\"{meta.get('base_model')}\")\n"
                f"model = PeftModel.from_pretrained(base, {where})\n")
    else:
        code = (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n{head}\n"
                f"model = AutoModelForCausalLM.from_pretrained({where})\n")
    text = f"```python\n{code}tokenizer = AutoTokenizer.from_pretrained({where})\n```"
    if inputs.exported.layout == "merged":
        text += "\n\nThe LoRA adapter is merged into the base weights"
        text += (f"; the adapter alone is in `{ADAPTER_DIR}/` (base `{meta.get('base_model')}`)."
                 if inputs.exported.base_loadable_by_name else
                 ", because its base cannot be fetched by name.")
    return text


def render_card(inputs: CardInputs, secrets: tuple[str, ...] = ()) -> str:
    """README.md of a version; `secrets` (e.g. the Hub token) are masked wherever they would appear."""
    ev, meta, data = inputs.evaluation, inputs.exported.meta, inputs.data
    hyper = markdown_table(["setting", "value"], [(k, json.dumps(v) if isinstance(v, list) else v)
                                                  for k, v in hyperparameters(inputs.run_config, meta)])
    snapshot = markdown_table(["", ""], [("documents", data.documents), ("chunks", data.chunks),
                                         ("QA pairs", data.qa_pairs),
                                         ("store content hash (SHA-256)", f"`{data.content_hash}`"),
                                         ("store backend", data.backend)])
    bias = bias_summary(inputs.run_dir, ev)
    config_yaml = yaml.safe_dump(redacted_container(inputs.run_config), sort_keys=False, allow_unicode=True)
    body = f"""# {inputs.repo_id} {inputs.version}

A retrieval-augmented question-answering model fine-tuned with promptly on a document corpus: given a
question and passages retrieved from that corpus, it answers from the passages.

## Base model

- **Base:** `{meta.get('base_model')}`
- **Origin:** {base_origin(meta)}
- **Published as:** {inputs.exported.layout} weights

{how_to_load(inputs)}

## Training

- **Run:** `{inputs.run_dir.name}` ({inputs.selection})
- **Checkpoint:** `{Path(str(ev.checkpoint)).name}`

{hyper}

## Evaluation

{ev.examples} questions of the `{ev.split}` split (documents never seen in training), answered with retrieval;
report `{ev.report_dir.name}` ({ev.created_at or 'time not recorded'}).

{evaluation_table(ev)}

## Bias

{BIAS_HOOK}
{bias or 'Not evaluated yet: this version has no bias evaluation.'}

## Data snapshot

{snapshot}

## Intended use

{inputs.card.intended_use}

## Limitations

{inputs.card.limitations}

## Training configuration

Secrets are masked (`***`).

```yaml
{config_yaml}```
"""
    card = "---\n" + yaml.safe_dump(front_matter(inputs), sort_keys=False) + "---\n\n" + body
    for secret in secrets:
        if secret:
            card = card.replace(secret, "***")
    return redact_text(card)
