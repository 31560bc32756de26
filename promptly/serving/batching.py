"""Generation batching: requests that arrive close together are generated in one `generate` call.

One worker thread owns the model. The first queued request waits at most `wait_s` for others (not at
all when every admitted request is already queued); then every queued request with the same model and
sampling settings (up to `max_batch`) goes in one batch, so eight concurrent clients cost little more
than one on a small model. Tokens are handed back to each request's asyncio queue as they are made
(streaming); a cancelled request's tokens are dropped, and a batch whose requests were all cancelled
is abandoned at its next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, replace
from typing import Any

from promptly.model.config import SamplingConfig
from promptly.model.generation import generate
from promptly.serving.metrics import ServerMetrics

log = logging.getLogger(__name__)

Event = tuple[str, Any]
"""("token", token id) as generated, then ("done", answer text) or ("error", exception)."""


@dataclass(eq=False)
class Job:
    """One prepared question waiting for (or in) a generation batch."""

    slot: Any
    """The ModelSlot whose tokenizer rendered the prompt: it must also generate the answer."""
    prompt_ids: list[int]
    sampling: SamplingConfig
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    queued_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    """Set by the request (timeout, client gone): its tokens are no longer wanted."""

    def key(self) -> tuple[Any, ...]:
        """Jobs generated together share a model and sampling settings (batch size aside)."""
        return (id(self.slot), astuple(replace(self.sampling, batch_size=1)))

    def push(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True


class _AllCancelled(Exception):
    """Raised from the token callback to stop a batch nobody waits for any more."""


class GenerationBatcher:
    """A queue of Jobs and the worker thread that generates them in batches."""

    def __init__(self, wait_s: float, max_batch: int, metrics: ServerMetrics,
                 admitted: Callable[[], int] | None = None) -> None:
        self.wait_s, self.max_batch, self.metrics = wait_s, max_batch, metrics
        self.admitted = admitted
        """Requests the server has admitted: when all of them are queued, nobody else can join, so waiting
        would only add latency (a lone client never pays the wait window)."""
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="promptly-generate", daemon=True)
        self.mean_batch_s = 1.0
        """Moving mean of a batch's wall clock (for Retry-After)."""

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
            self._cond.notify_all()

    def queued(self) -> int:
        return len(self._queue)

    def _take_batch(self) -> list[Job]:
        """Wait for a job, then up to wait_s (from its arrival) for more of its kind; take them."""
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return []
            first = self._queue[0]
            deadline = first.queued_at + self.wait_s
            while True:
                same = [j for j in self._queue if j.key() == first.key()][: self.max_batch]
                left = deadline - time.monotonic()
                everyone = self.admitted is not None and len(self._queue) >= self.admitted()
                if len(same) >= self.max_batch or left <= 0 or everyone or self._stopped:
                    break
                self._cond.wait(left)
            for job in same:
                self._queue.remove(job)
            return same

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                if self._stopped:
                    return
                continue
            batch = [j for j in batch if not j.cancelled]
            if batch:
                self._generate(batch)

    def _generate(self, batch: list[Job]) -> None:
        started = time.monotonic()
        for job in batch:
            self.metrics.queue_seconds.observe(started - job.queued_at)
        self.metrics.batch_size.observe(len(batch))
        tokens = 0

        def on_token(index: int, token: int) -> None:
            nonlocal tokens
            tokens += 1
            job = batch[index]
            if not job.cancelled:
                job.push(("token", token))
            elif all(j.cancelled for j in batch):
                raise _AllCancelled

        slot = batch[0].slot
        sampling = replace(batch[0].sampling, batch_size=len(batch))
        try:
            texts = generate(slot.loaded.model, slot.loaded.tokenizer, [j.prompt_ids for j in batch], sampling,
                             on_token=on_token)
        except _AllCancelled:
            log.info("abandoned a batch of %d cancelled requests", len(batch))
            return
        except Exception as err:  # one bad batch must not stop the worker: its requests get the error
            log.exception("generation failed")
            for job in batch:
                job.push(("error", err))
            return
        finally:
            seconds = time.monotonic() - started
            self.mean_batch_s = 0.8 * self.mean_batch_s + 0.2 * seconds
            self.metrics.tokens.inc(tokens)
            self.metrics.generation_seconds.observe(seconds)
        for job, text in zip(batch, texts, strict=True):
            job.push(("done", text))
