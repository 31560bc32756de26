"""Precision and base-weight dtype chosen for the hardware (promptly.utils.hardware.choose_precision), one
case per machine kind, and a short `promptly train` with everything on auto on this CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from promptly.errors import ConfigError
from promptly.utils.hardware import Hardware, choose_precision, cpu_bf16_native, detect_hardware
from promptly.verbs.train import train

from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401
from .test_train_overfit import LossRecorder

AMX_CPU = Hardware(gpu=False, bf16=True)
PLAIN_CPU = Hardware(gpu=False, bf16=False)
BF16_GPU = Hardware(gpu=True, bf16=True)
T4 = Hardware(gpu=True, bf16=False)


def test_native_bf16_cpu_trains_lora_in_bf16_with_a_bf16_frozen_base() -> None:
    choice = choose_precision("auto", "auto", adapter_only=True, hardware=AMX_CPU)
    assert (choice.precision, choice.weight_dtype) == ("bf16-mixed", "bfloat16")
    assert "bf16" in choice.reason


def test_native_bf16_cpu_keeps_a_fully_trained_model_fp32() -> None:
    # autocast over fp32 weights re-casts every weight each step: slower than fp32 on the CPU
    choice = choose_precision("auto", "auto", adapter_only=False, hardware=AMX_CPU)
    assert (choice.precision, choice.weight_dtype) == ("32-true", "float32")
    assert choose_precision("auto", "float32", adapter_only=True, hardware=AMX_CPU).precision == "32-true"
    assert choose_precision("auto", "bfloat16", adapter_only=True, hardware=AMX_CPU).precision == "bf16-mixed"


def test_bf16_gpu_uses_bf16_mixed_with_trained_weights_fp32() -> None:
    lora = choose_precision("auto", "auto", adapter_only=True, hardware=BF16_GPU)
    full = choose_precision("auto", "auto", adapter_only=False, hardware=BF16_GPU)
    assert (lora.precision, lora.weight_dtype) == ("bf16-mixed", "bfloat16")
    assert (full.precision, full.weight_dtype) == ("bf16-mixed", "float32")


def test_fp16_only_gpu_uses_fp16_mixed_with_a_scaler() -> None:
    lora = choose_precision("auto", "auto", adapter_only=True, hardware=T4)
    full = choose_precision("auto", "auto", adapter_only=False, hardware=T4)
    assert (lora.precision, lora.weight_dtype) == ("16-mixed", "float16")  # Lightning's 16-mixed scales the loss
    assert (full.precision, full.weight_dtype) == ("16-mixed", "float32")


def test_plain_cpu_trains_fp32() -> None:
    for adapter_only in (True, False):
        choice = choose_precision("auto", "auto", adapter_only=adapter_only, hardware=PLAIN_CPU)
        assert (choice.precision, choice.weight_dtype) == ("32-true", "float32")


def test_explicit_settings_win() -> None:
    forced = choose_precision("32-true", "auto", adapter_only=True, hardware=AMX_CPU)
    assert (forced.precision, forced.weight_dtype) == ("32-true", "float32")
    assert forced.reason == "set by trainer.precision"
    mixed = choose_precision("bf16-mixed", "float32", adapter_only=True, hardware=PLAIN_CPU)
    assert (mixed.precision, mixed.weight_dtype) == ("bf16-mixed", "float32")
    true_half = choose_precision("bf16-true", "auto", adapter_only=False, hardware=BF16_GPU)
    assert true_half.weight_dtype == "bfloat16"
    assert choose_precision("auto", "float16", adapter_only=True, hardware=BF16_GPU).weight_dtype == "float16"
    with pytest.raises(ConfigError, match=r"model\.dtype"):
        choose_precision("auto", "half", adapter_only=True, hardware=BF16_GPU)


@pytest.mark.parametrize("experiment", ["smollm2_135m_lora", "demo"])
def test_smollm2_experiments_train_in_bf16_on_a_native_bf16_cpu_without_a_precision_override(
        experiment: str, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = train_config([f"experiment={experiment}"], tmp_path / "run")
    assert cfg.trainer.precision == "auto" and cfg.model.dtype == "auto"
    factory = instantiate(cfg.model)  # nothing is loaded
    hardware = detect_hardware(str(cfg.trainer.accelerator))
    assert not hardware.gpu or torch.cuda.is_available()  # trainer=default: the CPU where there is no GPU
    choice = choose_precision(cfg.trainer.precision, factory.dtype_name, factory.adapter_only, AMX_CPU)
    assert (choice.precision, choice.weight_dtype) == ("bf16-mixed", "bfloat16")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert cpu_bf16_native("flags\t: fpu sse avx512f avx512_bf16 amx_tile")
    assert cpu_bf16_native("flags\t: fpu sse amx_bf16 amx_tile")
    assert not cpu_bf16_native("flags\t: fpu sse avx2 avx512f")
    assert detect_hardware("cpu").gpu is False


def _lora_run(tmp_path: Path, tiny_state: Path, url: str, name: str, *extra: str  # noqa: F811
              ) -> tuple[Path, list[float]]:
    out = tmp_path / name
    LossRecorder.losses = []
    cfg = train_config([*location(tmp_path, tiny_state, url, out), *FAST, "debug=overfit", "model/peft=lora",
                        "model.peft.r=8", "model.peft.alpha=16", "model.peft.dropout=0.0",
                        "model.peft.target_modules=[all-linear]", "optim.lr=1e-2", "trainer.max_epochs=12",
                        "trainer.check_val_every_n_epoch=12", "module.samples=0", "callbacks=none",
                        f"+callbacks.record._target_={LossRecorder.__module__}.LossRecorder", *extra], out)
    train(cfg)
    return out, list(LossRecorder.losses)


@pytest.mark.slow
def test_auto_training_on_this_cpu_learns_and_records_the_choice(ingested_url: str, tiny_state: Path,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    out, losses = _lora_run(tmp_path, tiny_state, ingested_url, "auto", "model.dtype=auto", "trainer.precision=auto")
    expected = choose_precision("auto", "auto", adapter_only=True, hardware=detect_hardware("cpu"))
    result = json.loads((out / "result.json").read_text())
    assert result["resolved"]["precision"] == expected.precision
    assert result["resolved"]["weight_dtype"] == expected.weight_dtype
    assert result["resolved"]["torch_threads"] >= 1
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == expected.precision and saved["model"]["dtype"] == expected.weight_dtype
    _, fp32 = _lora_run(tmp_path, tiny_state, ingested_url, "fp32", "model.dtype=float32", "trainer.precision=32-true")
    print(f"auto ({expected.precision}, {expected.weight_dtype}) losses", [round(x, 3) for x in losses])
    print("fp32 losses", [round(x, 3) for x in fp32])
    end, fp32_end = sum(losses[-3:]) / 3, sum(fp32[-3:]) / 3
    assert end < losses[0] - 0.8  # it learns (a random base: LoRA alone moves it slowly)
    assert abs(end - fp32_end) < 0.25 * (fp32[0] - fp32_end)  # about as fast as fp32 does
