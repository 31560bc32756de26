"""`promptly bias` end to end on the ingested sample corpus: probes answered by the tiny model through
retrieval, graded by a local judge, report files written; the data-balance check passes the sample corpus
(even with refuse) and refuses an unbalanced store; served=true probes the store's active version."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from promptly.bias.balance import BalanceSettings, DataImbalanceError, OnImbalance, check_balance
from promptly.records import Chunk, Document, QAPair, sha256_hex
from promptly.store.base import ModelVersion
from promptly.store.postgres import PostgresStore

from .conftest import DIM, REPO_ROOT
from .test_train_common import location, tiny_state, train_config  # noqa: F401

TINY = ["model=tiny", "model.tiny.num_hidden_layers=2", "model@judge.model=tiny",
        "judge.model.tiny.num_hidden_layers=2", "data.max_length=256", "data.retrieval.k=1",
        "generation.max_new_tokens=12", "logger=csv",
        f"calibration.source={REPO_ROOT.parent / 'shared' / 'data' / 'bbq'}", "calibration.categories=[Age]",
        "calibration.per_category=3"]


def bias_config(tmp: Path, state: Path, url: str, out: Path, extra: list[str]) -> Any:
    return train_config([*location(tmp, state, url, out), *TINY, *extra], out, config_name="bias")


@pytest.mark.slow
def test_bias_verb_writes_the_report_for_a_base_model(
        tmp_path: Path, tiny_state: Path, ingested_url: str) -> None:  # noqa: F811
    from promptly.verbs.bias import run

    out = tmp_path / "bias-run"
    report = run(bias_config(tmp_path, tiny_state, ingested_url, out,
                             ["probes.axes=[gender,age]", "probes.templates_per_axis=1",
                              "balance.on_imbalance=refuse"]))  # the sample corpus is not refused
    for name in ("bias_report.json", "bias_report.md", "bias_scores.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "bias_report.json").read_text())
    assert saved["overall"] == report["overall"] and set(saved["axes"]) == {"gender", "age"}
    assert len(saved["probes"]) == 6 and saved["settings"]["judge"] == "local_hf:tiny"
    for probe in saved["probes"]:
        assert 1.0 <= probe["score"] <= 5.0 and len(probe["distribution"]) == 5
        assert probe["sources"] and all("/" in s for s in probe["sources"])  # answered with retrieval
    gender = saved["axes"]["gender"]
    assert set(gender["groups"]) == {"woman", "man", "non_binary"}
    means = [g["mean_score"] for g in gender["groups"].values()]
    assert gender["gap"] == pytest.approx(max(means) - min(means))
    balance = saved["data_balance"]
    assert balance["findings"] == [] and [g["group"] for g in balance["shares"]["source"]] == ["default"]
    assert len(balance["shares"]["document"]) == 40 and 0 < balance["max_share"] < 0.25
    assert report["overall"]["data_max_share"] == balance["max_share"]
    markdown = (out / "bias_report.md").read_text()
    assert "## Data balance" in markdown and "#### gender" in markdown
    # the tiny judge on 3 calibration items is not shown to separate anything: the report says so first
    assert saved["judge_calibrated"] is False and report["judge_calibrated"] is False
    assert saved["calibration"]["pairs_used"] == 6 and saved["calibration"]["judge"] == "local_hf:tiny"
    assert "not evidence of bias or fairness" in markdown.splitlines()[2]
    assert markdown.index("## Measurements that need no judge") < markdown.index("## Judge scores (not evidence")
    logged = [p.read_text() for p in out.rglob("metrics.csv")]
    assert logged and "bias/bias_score" in logged[0] and "bias/bias_gap" in logged[0]


def _doc(doc_id: str, source: str, n_chunks: int) -> tuple[Document, list[Chunk]]:
    text = " ".join(f"{doc_id} part {i}" for i in range(n_chunks))
    doc = Document(id=doc_id, text=text, title=doc_id, source=source, uri=doc_id, content_hash=sha256_hex(text))
    vector = tuple([1.0] + [0.0] * (DIM - 1))
    return doc, [Chunk(document_id=doc_id, ordinal=i, content=f"{doc_id} part {i}", token_count=3,
                       embedding=vector) for i in range(n_chunks)]


def test_an_unbalanced_store_warns_or_is_refused(pg_store: PostgresStore, caplog: pytest.LogCaptureFixture) -> None:
    for doc_id, source, n in (("a.md", "wiki", 4), ("b.md", "wiki", 4), ("c.md", "forum", 1), ("d.md", "forum", 1)):
        pg_store.upsert_document(*_doc(doc_id, source, n))
    pg_store.upsert_qa_pairs([QAPair(question="q", answer="a", document_id="c.md", split="train")])
    settings = BalanceSettings(max_share=0.7, max_document_share=0.5)
    with caplog.at_level(logging.WARNING, logger="promptly.bias.balance"):
        report = check_balance(pg_store, settings)
    assert report.findings == ("source 'wiki' holds 80% of the chunks (more than 70%)",
                               "source 'forum' holds 100% of the qa pairs (more than 70%)",
                               "document 'c.md' holds 100% of the qa pairs (more than 50%)")
    assert "wiki" in caplog.text and report.max_share == 1.0
    with pytest.raises(DataImbalanceError, match="source 'wiki' holds 80%"):
        check_balance(pg_store, replace(settings, on_imbalance=OnImbalance.refuse))
    assert "| source | wiki | 2 | 8 | 80.0% | 0 | 0.0% |" in report.markdown()


def test_served_probes_the_active_version(tmp_path: Path, pg_url: str) -> None:
    from omegaconf import OmegaConf

    from promptly.errors import ConfigError, InputNotFoundError
    from promptly.verbs.bias import choose_served

    def cfg(**extra: Any) -> Any:
        return OmegaConf.create({"served": True, "run_dir": None, "model_dir": None,
                                 "store": {"_target_": "promptly.store.postgres.PostgresStore", "url": pg_url,
                                           "embedding_dim": DIM}, **extra})

    store = PostgresStore(pg_url, embedding_dim=DIM)
    store.migrate()
    with pytest.raises(InputNotFoundError, match="no model version is active"):
        choose_served(cfg())
    folder = tmp_path / "registry" / "me" / "model" / "v1"
    folder.mkdir(parents=True)
    store.add_model_version(ModelVersion("v1", "me/model", config={"location": str(folder)}))
    store.promote_model_version("me/model", "v1")
    store.close()
    assert choose_served(cfg()).model_dir == str(folder)
    with pytest.raises(ConfigError, match="leave run_dir and model_dir empty"):
        choose_served(cfg(model_dir="elsewhere"))
