"""`promptly publish` to the local registry, end to end on a tiny LoRA run: versions, tags, the store's
rows, promote and rollback, and a published model that plain transformers loads and that answers with the
same greedy tokens as the run it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from promptly.errors import ConfigError, InputNotFoundError
from promptly.publish.registry_local import LocalRegistry
from promptly.store.base import ModelVersionNotFoundError
from promptly.store.postgres import PostgresStore
from promptly.verbs.publish import run as run_publish

from .conftest import DIM
from .test_publish_common import newest_evaluation_line, publish_config, publish_store  # noqa: F401
from .test_train_common import tiny_state  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def _run_greedy(run_dir: Path, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """Greedy tokens from the run's evaluated checkpoint, loaded the way every promptly verb loads it."""
    from promptly.model.loading import load_run

    loaded = load_run(run_dir, run_dir.parent)
    ids = torch.tensor([prompt_ids])
    out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id)
    return [int(t) for t in out[0, ids.shape[1]:]]


def test_two_publishes_make_two_versions_that_promote_and_roll_back(
        tmp_path: Path, evaluated_run: Path, publish_store: str) -> None:  # noqa: F811
    cfg = publish_config(tmp_path, publish_store, [f"run_dir={evaluated_run}", "publish.repo_id=docs-bot"])
    metrics, objects = run_publish(cfg)
    first = objects["version"]
    assert (first.repo_id, first.version, first.is_active) == ("local/docs-bot", "v1", False)
    evaluation = newest_evaluation_line(evaluated_run)
    report = json.loads(Path(evaluation["report_json"]).read_text())
    assert first.metrics == report["overall"] and metrics == report["overall"]
    assert first.config["layout"] == "merged"  # a LoRA on the tiny model: its base cannot be fetched by name

    _, objects = run_publish(publish_config(tmp_path, publish_store, [
        f"run_dir={evaluated_run}", "publish.repo_id=local/docs-bot", "publish.promote=true",
        "publish.engine_model=docs-bot-v2"]))
    second = objects["version"]
    assert (second.version, second.is_active) == ("v2", True)
    assert second.config["engine_model"] == "docs-bot-v2" and "engine_model" not in first.config  # serve.engine=openai

    registry = LocalRegistry(tmp_path / "state" / "registry")
    tags = registry.tags("local/docs-bot")
    assert set(tags) == {"v1", "v2"} and tags["v1"] == first.revision and tags["v2"] == second.revision
    assert registry.head("local/docs-bot") == second.revision
    files = registry.files("local/docs-bot", "v2")
    for name in ("README.md", "promptly.json", "config.json", "model.safetensors", "generation_config.json",
                 "tokenizer.json", "tokenizer_config.json"):
        assert name in files, name
    assert not any(f.startswith("adapter") for f in files)  # no adapter on a base nobody can load
    meta = json.loads((Path(registry.location("local/docs-bot", "v2")) / "promptly.json").read_text())
    assert meta["version"] == "v2" and meta["layout"] == "merged" and meta["adapter_only"] is False
    assert meta["base_loadable_by_name"] is False and meta["run"] == evaluated_run.name
    assert {"retrieval", "prompt", "max_length"} <= set(meta["data"])  # loading the version applies them

    def active() -> str:
        _, objs = run_publish(publish_config(tmp_path, publish_store, ["action=list"]))
        return next(v.version for v in objs["versions"] if v.is_active)

    assert active() == "v2"
    run_publish(publish_config(tmp_path, publish_store, ["action=promote", "version=v1", "publish.repo_id=docs-bot"]))
    assert active() == "v1"
    _, objs = run_publish(publish_config(tmp_path, publish_store, ["action=rollback"]))
    assert objs["version"].version == "v2" and active() == "v2"
    with pytest.raises(ModelVersionNotFoundError, match="first one promoted"):
        run_publish(publish_config(tmp_path, publish_store, ["action=rollback"]))
    with pytest.raises(ModelVersionNotFoundError, match="no version v7 of local/docs-bot"):
        run_publish(publish_config(tmp_path, publish_store, ["action=promote", "version=v7",
                                                             "publish.repo_id=docs-bot"]))
    with PostgresStore(publish_store, embedding_dim=DIM) as store:
        assert store.status().model_versions == 2

    # The published model loads with plain transformers and answers exactly as the run does.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = registry.location("local/docs-bot", "v1")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer("Question: How do I install the proxy?\nAnswer:")["input_ids"]
    ids = torch.tensor([prompt])
    published = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                               pad_token_id=tokenizer.pad_token_id)[0, len(prompt):].tolist()
    assert model.generation_config.do_sample is False
    assert published == _run_greedy(evaluated_run, prompt, 12)


def test_a_run_without_an_evaluation_or_checkpoint_publishes_nothing(
        tmp_path: Path, evaluated_run: Path, publish_store: str) -> None:  # noqa: F811
    import shutil

    copy = tmp_path / "copied-run"
    shutil.copytree(evaluated_run, copy, ignore=shutil.ignore_patterns("evaluations.jsonl"))
    with pytest.raises(InputNotFoundError, match=r"has no evaluation .*promptly eval run_dir="):
        run_publish(publish_config(tmp_path, publish_store, [f"run_dir={copy}"]))

    line = newest_evaluation_line(evaluated_run)
    line["checkpoint"] = str(copy / "checkpoints" / "gone.ckpt")
    (copy / "evaluations.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(InputNotFoundError, match=r"has no checkpoint .*gone\.ckpt"):
        run_publish(publish_config(tmp_path, publish_store, [f"run_dir={copy}"]))

    with pytest.raises(ConfigError, match="promote needs the version"):
        run_publish(publish_config(tmp_path, publish_store, ["action=promote"]))
    assert not (tmp_path / "state" / "registry").exists()  # nothing was created, let alone tagged
    with PostgresStore(publish_store, embedding_dim=DIM) as store:
        assert store.list_model_versions() == []


def test_the_best_run_of_a_folder_is_chosen_by_the_declared_direction(
        tmp_path: Path, evaluated_run: Path, publish_store: str) -> None:  # noqa: F811
    """Two copies of the run with different evaluation scores: faithfulness is higher-is-better."""
    import shutil

    from promptly.publish.selection import best_run

    runs = tmp_path / "multirun"
    for job, faithfulness in (("0", 0.9), ("1", 0.2)):
        shutil.copytree(evaluated_run, runs / job)
        line = newest_evaluation_line(evaluated_run)
        report = json.loads(Path(line["report_json"]).read_text())
        report["overall"]["faithfulness"] = faithfulness
        (runs / job / "report.json").write_text(json.dumps(report))
        line["report_json"] = str(runs / job / "report.json")
        (runs / job / "evaluations.jsonl").write_text(json.dumps(line) + "\n")
    best, metric, direction = best_run(runs, "eval/faithfulness")
    assert (best.run_dir.name, metric, direction) == ("0", "eval/faithfulness", "max")
    best, _, direction = best_run(runs, "faithfulness", mode="min")  # an explicit mode wins
    assert (best.run_dir.name, direction) == ("1", "min")
    with pytest.raises(ConfigError, match="no declared direction"):
        best_run(runs, "eval/made_up_metric")
    _, objects = run_publish(publish_config(tmp_path, publish_store, [
        f"publish.runs_dir={runs}", "publish.metric=eval/faithfulness"]))
    assert objects["version"].config["run_dir"] == str(runs / "0")
    assert "by eval/faithfulness (max)" in objects["version"].config["selection"]
