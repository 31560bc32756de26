"""The model card of a published version: front matter, the evaluation report's metrics, the data snapshot,
and no secret, whether planted in the environment or in the run's saved config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from promptly.publish.card import BIAS_HOOK
from promptly.publish.registry_local import LocalRegistry
from promptly.verbs.publish import run as run_publish

from .test_publish_common import newest_evaluation_line, publish_config, publish_store  # noqa: F401
from .test_train_common import tiny_state  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ENV_TOKEN = "hf_" + "Q7zKp2" * 6
CONFIG_PASSWORD = "pl4nted-db-passw0rd"
CONFIG_KEY = "sk-" + "planted0key" * 3


def test_the_card_holds_the_report_metrics_and_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evaluated_run: Path, publish_store: str) -> None:  # noqa: F811
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    run_dir = tmp_path / "run"
    shutil.copytree(evaluated_run, run_dir)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    # As if a run had been saved before redaction existed: secrets in a URL, under a secret-named key,
    # and in free text.
    saved["store"]["url"] = f"postgresql://trainer:{CONFIG_PASSWORD}@db.example.com:5432/corpus"
    saved["logger_api_key"] = CONFIG_KEY
    saved["tags"] = [f"note {ENV_TOKEN}"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))

    _, objects = run_publish(publish_config(tmp_path, publish_store, [f"run_dir={run_dir}"]))
    folder = Path(LocalRegistry(tmp_path / "state" / "registry").location("local/promptly-rag", "v1"))
    card = (folder / "README.md").read_text()

    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["pipeline_tag"] == "text-generation" and "promptly" in meta["tags"]
    assert "base_model" not in meta  # the tiny base is not on the Hub: naming one would be false

    report = json.loads(Path(newest_evaluation_line(evaluated_run)["report_json"]).read_text())
    assert report["overall"] and objects["version"].metrics == report["overall"]
    for metric, value in report["overall"].items():
        assert f"| {metric} | {value:.4f} |" in body, metric
    assert "| faithfulness | " in body and "share of answer sentences supported" in body
    assert "built locally by promptly, not from the Hub" in body  # the base's true origin
    assert "| LoRA r | 4 |" in body and "| learning rate | 0.003 |" in body
    assert BIAS_HOOK in body
    assert "| documents | 2 |" in body and "| chunks | 3 |" in body
    assert body.count("store content hash") == 1
    snippet = body.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)  # the card's own loading code loads this version
    assert type(namespace["model"]).__name__ == "LlamaForCausalLM"
    assert "## Intended use" in body and "## Limitations" in body and "```yaml" in body

    everything = "".join(p.read_text(errors="ignore") for p in folder.rglob("*") if p.suffix in (".md", ".json"))
    everything += json.dumps(objects["version"].config)
    for secret in (ENV_TOKEN, CONFIG_PASSWORD, CONFIG_KEY):
        assert secret not in everything, secret
    assert "postgresql://trainer:***@db.example.com" in body  # the setting stays readable
