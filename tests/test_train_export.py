"""What the README promises of a training run's folder: `model/` loads with plain transformers (full
fine-tune) or PEFT on its base (LoRA) and answers with the same greedy tokens as the Lightning checkpoint;
`samples.jsonl` holds the greedy answers to validation questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate

from promptly.model.factory import ModelFactory
from promptly.store.postgres import PostgresStore
from promptly.verbs.train import train

from .conftest import DIM
from .test_train_common import FAST, _wandb_offline, location, tiny_state, train_config  # noqa: F401

NEW_TOKENS = 12
FULL = {"method": "full", "r": None, "alpha": None, "dropout": None, "target_modules": None}
LORA = ["model/peft=lora", "model.peft.r=4", "model.peft.alpha=8", "model.peft.dropout=0.0",
        "model.peft.target_modules=[q_proj,v_proj]"]


def run_with_export(name: str, extra: list[str], store_url: str, state: Path, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """One epoch (one validation, so the best checkpoint holds the final weights) with the export on."""
    out = tmp / name
    cfg = train_config([*location(tmp, state, store_url, out), *FAST, *extra, "export=true",
                        "data.batch_size=4", "data.limit.train=12", "data.limit.validation=3", "data.limit.test=0",
                        f"data.cache_dir={tmp / 'data'}", "trainer.max_epochs=1", "optim.lr=3e-3",
                        "module.samples=3", f"module.max_new_tokens={NEW_TOKENS}"], out)
    _, objects = train(cfg)
    return out, objects


def greedy_tokens(model: Any, eos: int, pad: int, prompts: list[list[int]]) -> list[list[int]]:
    model.eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                               do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad)
            out.append(y[0, x.shape[1]:].tolist())
    return out


def logits(model: Any, ids: list[int]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def from_checkpoint(objects: dict[str, Any]) -> Any:
    """A freshly built network of the run's model config with the Lightning checkpoint's weights."""
    cfg = objects["cfg"]
    net = instantiate(cfg.model).build()
    state = torch.load(objects["best_model_path"], map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()}, strict=False)
    assert not unexpected
    if not objects["factory"].adapter_only:
        assert not missing
    return net


def check_samples(out: Path, objects: dict[str, Any], store_url: str, exported_answers: list[str]) -> None:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {r["epoch"] for r in rows} == {0}
    with PostgresStore(store_url, embedding_dim=DIM) as store:
        validation = {(p.question, p.answer) for p in store.iter_qa_pairs(split="validation")}
    assert {(r["question"], r["reference"]) for r in rows} <= validation
    assert [r["generated"] for r in rows] == exported_answers


@pytest.mark.slow
def test_full_export_loads_with_plain_transformers_and_answers_as_the_checkpoint(
        ingested_url: str, tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, objects = run_with_export("full", ["model/peft=full"], ingested_url, tiny_state, tmp_path)
    export = out / "model"
    assert objects["export_dir"] == export and (export / "config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    prompts = [s.prompt_ids for s in objects["datamodule"].samples(3)]
    exported = greedy_tokens(model, tokenizer.eos_token_id, tokenizer.pad_token_id, prompts)
    assert exported == greedy_tokens(from_checkpoint(objects), tokenizer.eos_token_id, tokenizer.pad_token_id,
                                     prompts)
    assert any(exported)  # something was generated
    torch.testing.assert_close(logits(model, prompts[0]), logits(from_checkpoint(objects), prompts[0]),
                               rtol=1e-4, atol=1e-5)
    check_samples(out, objects, ingested_url, [tokenizer.decode(t, skip_special_tokens=True).strip()
                                               for t in exported])


@pytest.mark.slow
def test_lora_export_loads_with_peft_on_its_base_and_answers_as_the_checkpoint(
        ingested_url: str, tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    from peft import PeftModel
    from transformers import AutoTokenizer

    out, objects = run_with_export("lora", LORA, ingested_url, tiny_state, tmp_path)
    export = out / "model"
    assert (export / "adapter_config.json").is_file() and not (export / "model.safetensors").exists()
    meta = json.loads((export / "promptly.json").read_text())
    assert meta["adapter_only"] and meta["base_model"] == "tiny"
    trained = objects["cfg"].data  # the data settings it was trained with travel with it
    assert meta["data"]["retrieval"]["k"] == trained.retrieval.k and meta["data"]["max_length"] == trained.max_length
    assert meta["data"]["prompt"]["system"] == trained.prompt.system
    # The tiny base is not on the Hub: it is rebuilt from the exported settings (same init seed).
    base = ModelFactory("tiny", peft=FULL, tiny=meta["tiny"]).build()
    model = PeftModel.from_pretrained(base, export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    prompts = [s.prompt_ids for s in objects["datamodule"].samples(3)]
    exported = greedy_tokens(model, tokenizer.eos_token_id, tokenizer.pad_token_id, prompts)
    assert exported == greedy_tokens(from_checkpoint(objects), tokenizer.eos_token_id, tokenizer.pad_token_id,
                                     prompts)
    # Same weights, not just the same argmax; and the adapters did move the base (B starts at zero).
    checkpoint = from_checkpoint(objects)
    torch.testing.assert_close(logits(model, prompts[0]), logits(checkpoint, prompts[0]), rtol=1e-4, atol=1e-5)
    untrained = ModelFactory("tiny", peft=FULL, tiny=meta["tiny"]).build()
    assert not torch.allclose(logits(model, prompts[0]), logits(untrained, prompts[0]), atol=1e-4)
    check_samples(out, objects, ingested_url, [tokenizer.decode(t, skip_special_tokens=True).strip()
                                               for t in exported])
