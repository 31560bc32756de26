"""Continuous batching (promptly/serving/batching.py) on the tiny model: answers equal one-at-a-time
`generate` token for token though requests join and leave the running batch (and the KV buffers fill and
grow); a request arriving
mid-generation starts before the running one ends; greedy and sampled requests share a batch, each
with its own settings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import torch

from promptly.data.config import PromptConfig
from promptly.model.config import SamplingConfig
from promptly.model.factory import ModelFactory
from promptly.model.generation import generate
from promptly.model.loading import LoadedModel
from promptly.serving import decode
from promptly.serving.batching import ContinuousBatcher, Job
from promptly.serving.metrics import ServerMetrics
from promptly.serving.models import ModelSlot

from .conftest import REPO_ROOT

GREEDY = SamplingConfig(batch_size=1, max_new_tokens=12, repetition_penalty=1.1)


@pytest.fixture(scope="module")
def slot(tmp_path_factory: pytest.TempPathFactory) -> ModelSlot:
    """The tiny model with random weights drawn wide (std 0.3), so greedy answers vary token by token
    (at the default init every answer repeats one token and equality would prove little)."""
    torch.manual_seed(0)
    factory = ModelFactory(name_or_path="tiny", tiny={"corpus_dir": str(REPO_ROOT / "sample_data"),
                                                      "num_hidden_layers": 2,
                                                      "cache_dir": str(tmp_path_factory.mktemp("tiny"))})
    model = factory.build()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.3)
    loaded = LoadedModel(model=model.eval(), tokenizer=factory.load_tokenizer(), name="tiny", origin="tiny",
                         checkpoint=None, prompt=PromptConfig(), max_length=512)
    return ModelSlot(loaded, "tiny")


def prompts(slot: ModelSlot) -> list[list[int]]:
    tok = slot.loaded.tokenizer
    texts = ["How many passphrases can a driftsync repository hold?",
             "Where are logs written? " * 3, "Which port does the proxy use, and what does it retry? " * 2,
             "How are backups compressed?"]
    return [tok(t)["input_ids"] for t in texts]


def alone(slot: ModelSlot, prompt: list[int], sampling: SamplingConfig) -> list[int]:
    """The tokens `generate` streams for the prompt on its own (batch of one)."""
    tokens: list[int] = []
    generate(slot.loaded.model, slot.loaded.tokenizer, [prompt], sampling,
             on_token=lambda _, token: tokens.append(token))
    return tokens


async def collect(job: Job, progress: asyncio.Condition) -> tuple[list[int], str, float, float]:
    """The job's tokens, final text, and the monotonic times of its first token and of its end."""
    tokens: list[int] = []
    first = 0.0
    while True:
        kind, value = await job.events.get()
        if kind == "token":
            first = first or time.monotonic()
            tokens.append(value)
            async with progress:
                job.made = len(tokens)  # type: ignore[attr-defined]
                progress.notify_all()
        elif kind == "done":
            return tokens, value, first, time.monotonic()
        else:
            raise value


def run_batcher(slot: ModelSlot, plan: list[tuple[int, list[int], SamplingConfig]], max_batch: int = 8,
                ) -> tuple[list[tuple[list[int], str, float, float]], ServerMetrics]:
    """Submit each (prompt, sampling) once the first request has made the given number of tokens, and
    gather every answer."""
    metrics = ServerMetrics()
    batcher = ContinuousBatcher(max_batch, metrics)
    batcher.start()

    async def main() -> list[tuple[list[int], str, float, float]]:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[Any]] = []
        progress = asyncio.Condition()
        jobs: list[Job] = []
        for after, prompt, sampling in plan:
            if after:
                async with progress:
                    await progress.wait_for(lambda after=after: getattr(jobs[0], "made", 0) >= after)
            job = Job(slot=slot, prompt_ids=prompt, sampling=sampling, loop=loop)
            jobs.append(job)
            batcher.submit(job)
            tasks.append(asyncio.create_task(collect(job, progress)))
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    try:
        return asyncio.run(main()), metrics
    finally:
        batcher.stop()


def sample_value(metrics: ServerMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


@pytest.mark.parametrize("spare", [decode.SPARE_COLUMNS, 5], ids=["default-spare", "buffers-grow-every-5-steps"])
def test_answers_equal_one_at_a_time_greedy_answers_while_requests_join_and_leave(
        slot: ModelSlot, spare: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "SPARE_COLUMNS", spare)  # the KV buffers' free columns: 60 tokens fill 5 many times
    ps = prompts(slot)
    long = SamplingConfig(batch_size=1, max_new_tokens=60, repetition_penalty=1.1)
    expected = [alone(slot, ps[0], long)] + [alone(slot, p, GREEDY) for p in ps[1:]]
    assert len({tuple(e) for e in expected}) == len(expected) and all(len(set(e)) > 3 for e in expected)
    assert len(expected[0]) == 60
    # the long answer runs first; the others arrive while it is mid-generation, in two waves
    plan = [(0, ps[0], long), (3, ps[1], GREEDY), (3, ps[2], GREEDY), (10, ps[3], GREEDY)]
    answers, metrics = run_batcher(slot, plan)
    assert [a[0] for a in answers] == expected
    decoded = [slot.loaded.tokenizer.decode(e, skip_special_tokens=True).strip() for e in expected]
    assert [a[1] for a in answers] == decoded
    # newcomers started (and here even finished) before the running long answer ended
    long_end = answers[0][3]
    assert all(first < long_end for _, _, first, _ in answers[1:])
    assert sample_value(metrics, "promptly_joined_running_batch_total") >= 1
    steps, rows = (sample_value(metrics, "promptly_batch_size_count"), sample_value(metrics, "promptly_batch_size_sum"))
    assert rows > steps  # some steps decoded several sequences at once
    assert sample_value(metrics, "promptly_tokens_generated_total") == sum(len(e) for e in expected) + sum(
        len(e) < s.max_new_tokens for e, s in zip(expected, [long, GREEDY, GREEDY, GREEDY], strict=True))


def test_greedy_and_sampled_requests_share_a_batch_each_by_its_own_settings(slot: ModelSlot) -> None:
    ps = prompts(slot)
    hot = SamplingConfig(batch_size=1, max_new_tokens=20, do_sample=True, temperature=1.3, top_p=0.9, seed=7)
    short = SamplingConfig(batch_size=1, max_new_tokens=3)
    plan = [(0, ps[0], GREEDY), (0, ps[1], hot), (0, ps[2], short), (0, ps[3], hot)]
    answers, metrics = run_batcher(slot, plan)
    assert answers[0][0] == alone(slot, ps[0], GREEDY)  # greedy beside sampled rows is still greedy
    assert answers[2][0] == alone(slot, ps[2], short) and len(answers[2][0]) <= 3  # its own max_tokens
    assert sample_value(metrics, "promptly_batch_size_sum") > sample_value(metrics, "promptly_batch_size_count")
    # a sampled answer depends on its own seed, not on its batch mates: the same request alone agrees
    again, _ = run_batcher(slot, [(0, ps[1], hot)])
    assert again[0][0] == answers[1][0]
    assert answers[1][0] != alone(slot, ps[1], replace_greedy(hot))  # and it did sample


def replace_greedy(sampling: SamplingConfig) -> SamplingConfig:
    return SamplingConfig(batch_size=1, max_new_tokens=sampling.max_new_tokens,
                          repetition_penalty=sampling.repetition_penalty)
