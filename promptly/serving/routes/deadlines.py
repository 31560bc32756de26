"""The two ways a chat answer can run out of time, and why they differ: what cannot START by
serve.request_timeout_s is a 429 (the client may retry, nothing was lost); what started and then stalls is
a 504 and is cancelled. Once started, a local answer is finished (its length is bounded by max_tokens)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import TypeVar

from promptly.serving.engine import Engine, OverloadedError
from promptly.serving.http_errors import RequestTimeoutError

T = TypeVar("T")


async def before_start(engine: Engine, awaitable: Awaitable[T], deadline: float) -> T:
    """Retrieval, then the wait for a row in the batch: what cannot start by the deadline is a 429 (the
    client may retry), never a 504 after the work was accepted."""
    try:
        return await asyncio.wait_for(awaitable, timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        engine.metrics.rejected.labels("not_started").inc()
        raise OverloadedError(engine.retry_after(), " (the answer could not start within "
                              f"serve.request_timeout_s={engine.settings.request_timeout_s:g} s)") from None


async def within(engine: Engine, awaitable: Awaitable[T], deadline: float) -> T:
    """The awaitable's result by the deadline (none when it is infinite), else a 504."""
    if deadline == math.inf:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        engine.metrics.rejected.labels("timeout").inc()
        raise RequestTimeoutError(f"no answer within serve.request_timeout_s={engine.settings.request_timeout_s:g} "
                                  "s: the request was cancelled (the server is busy, or the answer is long)"
                                  ) from None
