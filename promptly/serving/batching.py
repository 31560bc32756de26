"""Continuous batching (iteration-level scheduling, as in Orca and vLLM) of the served model.

One worker thread owns the model and loops: newcomers in the queue (as many as free rows allow, up to
`max_prefill_tokens` of prompt per turn) are prefilled together and joined to the running batch, then
every running sequence advances by one token in one forward pass. A sequence leaves the batch the step
it ends (eos, max_tokens, or its request cancelled), so a request arriving mid-generation starts at the
next step instead of waiting for the batch to drain, and a short answer never waits for a long one.
Each request keeps its own sampling settings (decode.pick) and its own token events (streaming).

The batcher also measures what admission needs (engine.admit): the batch's recent tokens per second and
the mean answer length, hence how long a newcomer would wait for a free row.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from promptly.model.config import SamplingConfig
from promptly.model.generation import _stop_ids, pad_id
from promptly.serving import decode
from promptly.serving.compute import on_compute_thread
from promptly.serving.metrics import ServerMetrics

log = logging.getLogger(__name__)

Event = tuple[str, Any]
"""("token", token id) as generated, then ("done", answer text) or ("error", exception)."""


@dataclass(eq=False)
class Job:
    """One prepared question waiting for (or in) the running batch."""

    slot: Any
    """The ModelSlot whose tokenizer rendered the prompt: it must also generate the answer."""
    prompt_ids: list[int]
    sampling: SamplingConfig
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    begun: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when its prefill begins (or at its first event): the API answers 429 instead of 200 when it is
    not set within serve.request_timeout_s."""
    queued_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    """Set by the request (not started in time, client gone): its tokens are no longer wanted."""

    async def started(self) -> None:
        """Wait until generation of this job has begun (the same call as a RemoteJob's)."""
        await self.begun.wait()

    def push(self, event: Event) -> None:
        self._call(self._deliver, event)

    def mark_started(self) -> None:
        self._call(self.begun.set)

    def _deliver(self, event: Event) -> None:
        self.begun.set()
        self.events.put_nowait(event)

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True


@dataclass(eq=False)
class _Sequence:
    """A running job: its tokens so far (prompt + answer, for the repetition penalty) and its answer."""

    job: Job
    seen: list[int]
    answer: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None


class ContinuousBatcher:
    """The queue of Jobs and the worker thread that decodes them in one running batch."""

    def __init__(self, max_batch: int, metrics: ServerMetrics, max_prefill_tokens: int = 4096) -> None:
        self.max_batch, self.metrics, self.max_prefill_tokens = max_batch, metrics, max_prefill_tokens
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="promptly-generate", daemon=True)
        self._rows: list[_Sequence] = []
        self._running: decode.Running | None = None
        self._logits: torch.Tensor | None = None
        self.tokens_per_s: float | None = None
        """Moving mean of the batch's tokens per second (prefill time included), while busy."""
        self.mean_answer_tokens: float | None = None
        """Moving mean of the tokens a finished request generated."""

    # -- life cycle and queue --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        with self._cond:
            self._queue.append(job)
            self.metrics.queued.set(len(self._queue))
            self._cond.notify_all()

    def queued(self) -> int:
        return len(self._queue)

    def running(self) -> int:
        return len(self._rows)

    def estimate_wait_s(self, ahead: int) -> float:
        """Seconds until `ahead` requests have finished and freed their rows: requests leave the full
        batch at tokens_per_s / mean_answer_tokens a second. 0 while nothing has been measured yet."""
        if ahead <= 0 or not self.tokens_per_s or not self.mean_answer_tokens:
            return 0.0
        return ahead * self.mean_answer_tokens / self.tokens_per_s

    # -- the loop --------------------------------------------------------------------------------------------
    def _take_newcomers(self) -> list[Job]:
        """Block while idle; then the queued jobs that fit now: same model as the running batch, free rows,
        and the prefill budget (the first one always fits, so a long prompt is never passed over for ever)."""
        with self._cond:
            while not self._queue and not self._rows and not self._stopped:
                self._cond.wait()
            taken: list[Job] = []
            budget = self.max_prefill_tokens
            slot = self._rows[0].job.slot if self._rows else None
            for job in list(self._queue):
                if job.cancelled:
                    self._queue.remove(job)
                    continue
                if len(self._rows) + len(taken) >= self.max_batch:
                    break
                if slot is None:
                    slot = job.slot
                if job.slot is not slot or (taken and len(job.prompt_ids) > budget):
                    continue
                budget -= len(job.prompt_ids)
                taken.append(job)
                self._queue.remove(job)
            self.metrics.queued.set(len(self._queue))
            return taken

    def _run(self) -> None:
        while not self._stopped:
            newcomers = self._take_newcomers()
            if self._stopped:
                break
            started, tokens = time.monotonic(), 0
            try:
                if newcomers:
                    tokens += on_compute_thread(self._prefill, newcomers)
                if self._rows:
                    tokens += on_compute_thread(self._step)
            except Exception as err:  # one bad batch must not stop the worker: its requests get the error
                log.exception("generation failed")
                for seq in self._rows:
                    seq.job.push(("error", err))
                for job in newcomers:
                    job.push(("error", err))
                self._rows, self._running, self._logits = [], None, None
                continue
            finally:
                self.metrics.running.set(len(self._rows))
            if tokens:
                rate = tokens / max(time.monotonic() - started, 1e-6)
                self.tokens_per_s = rate if self.tokens_per_s is None else 0.8 * self.tokens_per_s + 0.2 * rate
                self.metrics.tokens.inc(tokens)

    def _prefill(self, jobs: list[Job]) -> int:
        """Run the newcomers' prompts, choose their first tokens and join them to the running batch."""
        now = time.monotonic()
        slot = jobs[0].slot
        for job in jobs:
            job.mark_started()
            self.metrics.queue_seconds.observe(now - job.queued_at)
        if self._rows:
            self.metrics.joined_running.inc(len(jobs))
        model, tokenizer = slot.loaded.model, slot.loaded.tokenizer
        model.eval()
        running, logits = decode.prefill(model, [j.prompt_ids for j in jobs], pad_id(tokenizer))
        self.metrics.prefill_seconds.observe(time.monotonic() - now)
        seqs = [_Sequence(j, list(j.prompt_ids), generator=_generator(j.sampling)) for j in jobs]
        self._running = decode.join(self._running, running)
        self._rows += seqs
        self._logits = logits if self._logits is None else torch.cat([self._logits, logits])
        return 0

    def _step(self) -> int:
        """Choose each row's next token from the last logits, hand it out, drop ended rows, run one step."""
        assert self._running is not None and self._logits is not None
        slot = self._rows[0].job.slot
        stop = _stop_ids(slot.loaded.model, slot.loaded.tokenizer)
        chosen = decode.pick(self._logits, [s.job.sampling for s in self._rows], [s.seen for s in self._rows],
                             [s.generator for s in self._rows])
        keep: list[int] = []
        for row, (seq, token) in enumerate(zip(self._rows, chosen, strict=True)):
            if seq.job.cancelled:
                self.metrics.rejected.labels("cancelled").inc()
                continue
            if token not in stop:
                seq.answer.append(token)
                seq.seen.append(token)
                seq.job.push(("token", token))
            if token in stop or len(seq.answer) >= seq.job.sampling.max_new_tokens:
                self._finish(seq, slot.loaded.tokenizer)
            else:
                keep.append(row)
        produced = len(chosen)
        running: decode.Running | None = self._running
        if len(keep) < len(self._rows):
            self._rows = [self._rows[i] for i in keep]
            running = decode.keep(self._running, keep)
        if running is None:
            self._running, self._logits = None, None
            return produced
        started = time.monotonic()
        self.metrics.batch_size.observe(len(self._rows))
        tokens = torch.tensor([s.seen[-1] for s in self._rows], dtype=torch.long,
                              device=running.mask.device)
        self._running, self._logits = decode.step(slot.loaded.model, running, tokens)
        self.metrics.step_seconds.observe(time.monotonic() - started)
        return produced

    def _finish(self, seq: _Sequence, tokenizer: Any) -> None:
        n = len(seq.answer)
        self.mean_answer_tokens = n if self.mean_answer_tokens is None else 0.9 * self.mean_answer_tokens + 0.1 * n
        self.metrics.generation_seconds.observe(time.monotonic() - seq.job.queued_at)
        seq.job.push(("done", tokenizer.decode(seq.answer, skip_special_tokens=True).strip()))


def _generator(sampling: SamplingConfig) -> torch.Generator | None:
    """A request's own seeded generator, so its sampled answer does not depend on its batch mates."""
    if not sampling.do_sample:
        return None
    return torch.Generator().manual_seed(sampling.seed)
