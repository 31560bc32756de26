"""LocalHFClient answers through promptly's one generate: the same reply as a plain greedy
`model.generate` of its rendered prompt, seeded sampling is reproducible, and a stop string ends the reply."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from promptly.llm_clients import LLMClientError, LocalHFClient
from promptly.model.factory import ModelFactory

from .conftest import REPO_ROOT

MESSAGES = [{"role": "system", "content": "Answer from the passage."},
            {"role": "user", "content": "Passage: quillmq listens on port 7300.\nWhich port does quillmq use?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    torch.manual_seed(0)
    factory = ModelFactory(name_or_path="tiny", tiny={"corpus_dir": str(REPO_ROOT / "sample_data"),
                                                      "num_hidden_layers": 2, "max_position_embeddings": 256,
                                                      "cache_dir": str(tmp_path_factory.mktemp("tiny"))})
    return factory.build(), factory.load_tokenizer()


def test_a_reply_is_what_plain_transformers_generates(tiny: tuple[Any, Any]) -> None:
    """Sampled with the same seed, so the reply is real text even from a random model (whose greedy reply
    is one token repeated), and every setting that reaches `model.generate` has to match."""
    model, tokenizer = tiny
    client = LocalHFClient(model, tokenizer, max_new_tokens=12, temperature=0.8, top_p=0.9, device="cpu")
    ids = torch.tensor([client.prompt_ids(MESSAGES)])
    eos = tokenizer.eos_token_id
    model.eval()
    torch.manual_seed(7)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=True,
                             temperature=0.8, top_p=0.9, num_beams=1, eos_token_id=eos, pad_token_id=eos)
    reference = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert len(reference.split()) >= 2, reference
    assert client.generate(MESSAGES, seed=7) == reference


def test_sampling_is_seeded_and_leaves_the_global_generator_alone(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    client = LocalHFClient(model, tokenizer, max_new_tokens=16, temperature=1.0, device="cpu")
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = client.generate(MESSAGES, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert client.generate(MESSAGES, seed=5) == first
    assert len({client.generate(MESSAGES, seed=s) for s in range(6)}) > 1  # a random model: seeds differ


def test_a_stop_string_ends_the_reply_and_is_kept(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    # sampled with one seed: the same tokens up to the stop (a random model's greedy reply is one token repeated)
    sampled: dict[str, Any] = {"max_new_tokens": 24, "temperature": 0.8, "device": "cpu"}
    full = LocalHFClient(model, tokenizer, **sampled).generate(MESSAGES, seed=3)
    words = full.split()
    assert len(words) >= 3, full
    stop = words[1]
    stopped = LocalHFClient(model, tokenizer, stop=[stop], **sampled).generate(MESSAGES, seed=3)
    assert stopped.endswith(stop) and full.startswith(stopped) and len(stopped) < len(full)


def test_a_prompt_longer_than_the_model_is_refused(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    client = LocalHFClient(model, tokenizer, max_new_tokens=8, device="cpu")
    with pytest.raises(LLMClientError, match="exceeds the model's 256 positions"):
        client.generate([{"role": "user", "content": "port 7300 " * 200}], seed=0)
