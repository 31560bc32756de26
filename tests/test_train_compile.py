"""`module.compile`: torch.compile of the decoder layers, opt-in (benchmarks/README.md says why it is off by
default on a CPU). Cheap checks only: composing the setting and wrapping the layers compile nothing; the
compilation itself (minutes on this CPU) is measured by benchmarks/train_throughput.py --compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from promptly.model.module import RagLitModule
from promptly.verbs.train import instantiate_with

from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401


def _module(overrides: list[str], tmp_path: Path, state: Path) -> RagLitModule:
    cfg = train_config([*FAST, *location(tmp_path, state, "postgresql://unused/db"), *overrides], tmp_path / "run")
    factory = instantiate(cfg.model)
    module: RagLitModule = instantiate_with(cfg.module, model=factory, tokenizer=factory.load_tokenizer(),
                                            optimizer=instantiate(cfg.optim))
    module.configure_model()
    return module


def _layers(module: RagLitModule) -> list[torch.nn.Module]:
    assert module.net is not None
    layers = [m for m in module.net.modules() if type(m).__name__.endswith("DecoderLayer")]
    assert len(layers) == 2  # FAST's model.tiny.num_hidden_layers
    return layers


def test_compile_is_off_by_default(tmp_path: Path, tiny_state: Path) -> None:  # noqa: F811
    module = _module([], tmp_path, tiny_state)
    assert module.compile_layers is False
    assert all(getattr(layer, "_compiled_call_impl", None) is None for layer in _layers(module))


def test_module_compile_wraps_every_decoder_layer_and_keeps_parameter_names(
        tmp_path: Path, tiny_state: Path) -> None:  # noqa: F811
    eager = _module([], tmp_path / "eager", tiny_state)
    compiled = _module(["module.compile=true"], tmp_path / "compiled", tiny_state)
    assert compiled.compile_layers is True
    assert all(getattr(layer, "_compiled_call_impl", None) is not None for layer in _layers(compiled))
    # checkpoints (state_dict keys) are the same as an eager run's, so either resumes the other
    assert list(compiled.state_dict()) == list(eager.state_dict())


def test_module_compile_is_a_typed_setting(tmp_path: Path, tiny_state: Path) -> None:  # noqa: F811
    with pytest.raises(Exception, match="compile"):
        train_config([*FAST, *location(tmp_path, tiny_state, "postgresql://unused/db"), "module.compile=maybe"],
                     tmp_path / "run")
