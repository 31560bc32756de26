"""A model answers with the data settings it was trained with (retrieval k and mode, prompt, max_length),
whether it comes as a run folder or an export, and a `data.*` key typed on the command line still wins."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from promptly.model.loading import adopt_model_data, data_override_keys, trained_data_settings

from .conftest import as_job, compose, resolved


def trained_data(k: int, mode: str, max_length: int) -> dict:  # type: ignore[type-arg]
    data = OmegaConf.to_container(resolved(compose("train")).data, enum_to_str=True)
    data["retrieval"].update(k=k, mode=mode)  # type: ignore[index]
    data["max_length"] = max_length  # type: ignore[index]
    return data  # type: ignore[return-value]


def ask_config(tmp_path: Path, overrides: list[str]):  # type: ignore[no-untyped-def]
    """As the ask verb receives it: interpolations (retrieval.k -> data.retrieval.k) still unresolved."""
    return as_job(compose("ask", overrides), tmp_path, tmp_path)


def test_data_override_keys_are_the_data_keys_typed() -> None:
    typed = ["run_dir=latest", "data.retrieval.k=5", "+data.extra=1", "++data.max_length=99", "data=causal_lm",
             "retrieval.k=2"]
    assert data_override_keys(typed) == ["data.retrieval.k", "data.extra", "data.max_length"]


def test_a_run_brings_its_data_settings_and_a_typed_data_override_wins(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": trained_data(k=2, mode="text", max_length=300)}))

    plain_cfg = adopt_model_data(ask_config(tmp_path, [f"run_dir={run}"]), [f"run_dir={run}"])
    assert (plain_cfg.retrieval.k, str(plain_cfg.retrieval.mode), plain_cfg.data.max_length) == (2, "text", 300)

    typed = [f"run_dir={run}", "data.retrieval.k=5"]
    with caplog.at_level(logging.WARNING, logger="promptly.model.loading"):
        cfg = adopt_model_data(ask_config(tmp_path, typed), typed)
    assert cfg.data.retrieval.k == 5 and cfg.retrieval.k == 5  # the user's 5, not the run's 2
    assert str(cfg.retrieval.mode) == "text" and cfg.data.max_length == 300  # the rest is still the run's
    assert "data.retrieval.k=5" in caplog.text and "run run" in caplog.text  # and the user is told


def test_an_export_applies_the_data_settings_its_promptly_json_records(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    recorded = trained_data_settings(OmegaConf.create(trained_data(k=4, mode="vector", max_length=256)))
    assert set(recorded) == {"retrieval", "prompt", "max_length"}
    (export / "promptly.json").write_text(json.dumps({"base_model": "tiny", "data": recorded}))
    cfg = adopt_model_data(ask_config(tmp_path, [f"model_dir={export}"]), [f"model_dir={export}"])
    assert (cfg.retrieval.k, str(cfg.retrieval.mode), cfg.data.max_length) == (4, "vector", 256)

    default_k = compose("ask").data.retrieval.k
    (export / "promptly.json").write_text(json.dumps({"base_model": "tiny"}))  # an export from before
    cfg = adopt_model_data(ask_config(tmp_path, [f"model_dir={export}"]), [f"model_dir={export}"])
    assert cfg.retrieval.k == default_k  # nothing recorded: the configured settings
