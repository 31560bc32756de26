"""Every config composes and instantiates: each entry config in configs/, each option of each group,
and each experiment in experiments/. Nothing connects: stores and embedders are lazy, HF models are
not loaded (the tiny model is built for real), GPU trainers are instantiated with CPU devices on a
machine without one, and plugins that are not installed are composed but not instantiated."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from promptly.data.datamodule import RagDataModule
from promptly.model.config import TinyConfig
from promptly.model.factory import ModelFactory
from promptly.model.module import RagLitModule
from promptly.model.tiny import load_tiny_tokenizer
from promptly.utils.instantiators import instantiate_callbacks, instantiate_loggers
from promptly.verbs.train import instantiate_with, resolve_precision

from .conftest import REPO_ROOT, compose
from .test_train_common import SAMPLE_DATA, tiny_state  # noqa: F401

CONFIGS = REPO_ROOT / "configs"
ENTRIES = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
# Groups used only through another group's defaults, or by Hydra itself, go through train.yaml.
OWNER_FALLBACK = "train"


def _defaults_groups(entry: str) -> set[str]:
    data = yaml.safe_load((CONFIGS / f"{entry}.yaml").read_text()) or {}
    groups: set[str] = set()
    for item in data.get("defaults", []):
        if isinstance(item, dict):
            for key in item:
                groups.add(str(key).replace("override ", "").split("@")[0].strip().lstrip("/").split("/")[0])
        elif isinstance(item, str) and item != "_self_" and (CONFIGS / f"{item}.yaml").is_file():
            groups |= _defaults_groups(item)  # e.g. eval.yaml builds on train.yaml
    return groups


def _cases() -> list[Any]:
    owners: dict[str, str] = {}
    for entry in [OWNER_FALLBACK, *ENTRIES]:  # train first: the one entry that instantiates every training group
        for group in _defaults_groups(entry):
            owners.setdefault(group, entry)
    cases = [pytest.param(entry, [], id=f"{entry}.yaml") for entry in ENTRIES]
    for root, dirs, files in os.walk(CONFIGS):
        dirs[:] = sorted(d for d in dirs if not (Path(root) / d).is_symlink())
        group = Path(root).relative_to(CONFIGS).as_posix()
        if group == ".":
            continue
        entry = owners.get(group.split("/")[0], OWNER_FALLBACK)
        for f in sorted(files):
            if f.endswith(".yaml"):
                cases.append(pytest.param(entry, [f"{group}={f[:-5]}"], id=f"{group}/{f}"))
    for f in sorted((REPO_ROOT / "experiments").glob("*.yaml")):
        cases.append(pytest.param("train", [f"experiment={f.stem}"], id=f"experiments/{f.name}"))
    return cases


@pytest.fixture(autouse=True)
def _no_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings whose absence is an error at instantiation; none of them is ever dialled."""
    monkeypatch.setenv("PROMPTLY_DATABASE_URL", "postgresql://promptly:pw@127.0.0.1:1/none")
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "not-a-key")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def _resolved(entry: str, overrides: list[str], tmp: Path) -> tuple[DictConfig, DictConfig]:
    from hydra.core.hydra_config import HydraConfig

    cfg = compose(entry, [f"paths.root_dir={tmp}", f"paths.data_dir={SAMPLE_DATA}", *overrides]
                  if _has_paths(entry) else overrides)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp / "run")
        cfg.hydra.runtime.cwd = str(tmp)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
    HydraConfig.instance().set_config(cfg)
    plain: Any = OmegaConf.to_container(cfg, resolve=True)
    hydra_cfg = OmegaConf.create(plain.pop("hydra"))
    return OmegaConf.create(plain), hydra_cfg


def _has_paths(entry: str) -> bool:
    return "paths" in _defaults_groups(entry) or entry == "eval"


def _importable(target: str) -> bool:
    module = target.rsplit(".", 1)[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _instantiate_targets(node: Any, skip: set[str]) -> list[Any]:
    """Instantiate every outermost `_target_` node except those under the skipped top-level keys."""
    made = []
    if isinstance(node, DictConfig):
        if "_target_" in node:
            return [instantiate(node)]
        for key, child in node.items():
            if key not in skip:
                made += _instantiate_targets(child, set())
    return made


def _trainer_node(cfg: DictConfig) -> tuple[DictConfig, Any]:
    """The trainer config, moved to CPU where this machine has no GPU (strategy instantiated apart)."""
    node = cfg.trainer.copy()
    strategy = None
    if not torch.cuda.is_available() and node.get("accelerator") in ("gpu", "cuda"):
        with open_dict(node):
            node.accelerator, node.devices, node.precision = "cpu", 1, "32-true"
            if isinstance(node.get("strategy"), DictConfig):  # FSDP needs CUDA to be attached to a Trainer
                strategy = instantiate(node.strategy)
                node.strategy = "auto"
    return node, strategy


def _training_objects(cfg: DictConfig, tokenizer: Any) -> None:
    factory = instantiate(cfg.model)
    assert isinstance(factory, ModelFactory)
    if factory.is_tiny:
        model = factory.build()  # the local model really builds, PEFT applied
        assert any(p.requires_grad for p in model.parameters())
    embedder = instantiate(cfg.embedder)
    datamodule = instantiate_with(cfg.data, store=instantiate(cfg.store), tokenizer=tokenizer, embedder=embedder,
                                  context_length=1024, attn_implementation=factory.attn_implementation)
    assert isinstance(datamodule, RagDataModule)
    optimizer = instantiate(cfg.optim)
    param = torch.nn.Parameter(torch.zeros(2, 2))
    opt = optimizer(params=[param])
    if cfg.get("scheduler"):
        instantiate(cfg.scheduler)(optimizer=opt, total_steps=10).step()
    module = instantiate_with(cfg.module, model=factory, tokenizer=tokenizer, optimizer=optimizer,
                              scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None)
    assert isinstance(module, RagLitModule)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    for node in (cfg.get("logger") or {}).values():
        needs = {"TensorBoardLogger": ("tensorboard", "tensorboardX"), "MLFlowLogger": ("mlflow",)}.get(
            str(node.get("_target_", "")).rsplit(".", 1)[-1], ())
        if needs and not any(importlib.util.find_spec(n) for n in needs):
            pytest.skip(f"{node._target_} needs `pip install {needs[0]}` (an optional extra; the config composes)")
    loggers = instantiate_loggers(cfg.get("logger"))
    node, strategy = _trainer_node(cfg)
    trainer = instantiate_with(node, callbacks=callbacks, logger=loggers or False,
                               precision=resolve_precision(node.precision))
    assert trainer.max_epochs == cfg.trainer.max_epochs
    del strategy


@pytest.fixture(scope="module")
def tokenizer(tiny_state: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    return load_tiny_tokenizer(TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny")))


@pytest.mark.parametrize(("entry", "overrides"), _cases())
def test_config_composes_and_instantiates(entry: str, overrides: list[str], tokenizer: Any, tmp_path: Path) -> None:
    cfg, hydra_cfg = _resolved(entry, overrides, tmp_path)
    if {"model", "data", "trainer", "module"} <= set(cfg):
        _training_objects(cfg, tokenizer)
        _instantiate_targets(cfg, skip={"model", "data", "trainer", "module", "optim", "scheduler", "callbacks",
                                        "logger", "store", "embedder"})
    elif "data" in cfg:  # eval, ask, serve: the datamodule gets its store and tokenizer from the verb
        datamodule = instantiate_with(cfg.data, store=instantiate(cfg.store), tokenizer=tokenizer,
                                      embedder=instantiate(cfg.embedder), context_length=1024)
        assert isinstance(datamodule, RagDataModule)
        _instantiate_targets(cfg, skip={"data", "store", "embedder"})
    else:
        _instantiate_targets(cfg, skip=set())
    for part in ("launcher", "sweeper"):
        node = hydra_cfg.get(part)
        if node is None or "_target_" not in node or node._target_.startswith("hydra._internal."):
            continue  # Hydra's built-in basic launcher/sweeper: Hydra's own business
        if _importable(node._target_):
            instantiate(node)
        elif overrides and overrides[0].startswith(f"hydra/{part}="):
            pytest.skip(f"{node._target_} is not installed (the config composes; Hydra instantiates it)")


def test_schemas_reject_typos_with_the_valid_keys() -> None:
    from hydra.errors import ConfigCompositionException

    for typo in ("data.batch_szie=4", "model.peft.rank=8", "data.retrieval.kk=2"):
        with pytest.raises(ConfigCompositionException):
            compose("train", [typo])
    for bad_value in ("data.batching=pakced", "model/peft=lora model.peft.method=lorra", "data.task=rag"):
        with pytest.raises(ConfigCompositionException):
            compose("train", bad_value.split())


def test_lora_fields_are_refused_for_full_fine_tuning() -> None:
    from hydra.errors import InstantiationException

    cfg = compose("train", ["model/peft=full", "model.peft.r=8"])
    with pytest.raises(InstantiationException, match=r"model.peft.method=full .* model.peft.r is set"):
        instantiate(cfg.model)


def test_qlora_says_what_it_needs_on_a_machine_without_a_gpu(tiny_state: Path) -> None:  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    factory = ModelFactory("tiny", peft={"method": "qlora", "r": 4, "alpha": 8, "dropout": 0.0,
                                         "target_modules": ["q_proj"]},
                           tiny=TinyConfig(corpus_dir=str(SAMPLE_DATA), cache_dir=str(tiny_state / "tiny")))
    from promptly.model.peft import quantization_config

    with pytest.raises(RuntimeError, match="CUDA GPU"):
        quantization_config()
    assert factory.adapter_only


def test_the_notebook_experiment_matches_the_notebook(tmp_path: Path) -> None:
    cfg, _ = _resolved("train", ["experiment=qwen2_5_0_5b_notebook"], tmp_path)
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (cfg.model.peft.method, cfg.model.peft.r, cfg.model.peft.alpha, cfg.model.peft.dropout) == (
        "lora", 16, 32, 0.05)
    assert list(cfg.model.peft.target_modules) == ["q_proj", "v_proj"]
    assert cfg.optim.lr == 2e-4 and cfg.trainer.max_epochs == 3
    assert cfg.data.batch_size == 1 and cfg.trainer.accumulate_grad_batches == 8
    assert "technical questions about IT software" in cfg.data.prompt.system
