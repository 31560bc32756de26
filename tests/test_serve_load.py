"""`promptly serve` under load: eight concurrent OpenAI clients all answered (none lost, each stored
once) with batching visible in /metrics; past serve.max_pending a 429 with Retry-After; past
serve.request_timeout_s a 504 that stores nothing."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from promptly.store.postgres import PostgresStore

from .cloud.promptly_server import ServeThread
from .conftest import DIM
from .serve_fixtures import QUESTION, serve_cfg, serve_db  # noqa: F401  (a fixture)

QUESTIONS = [QUESTION, "How do I install driftsync?", "What does the proxy retry?", "Which port is used?",
             "How are backups compressed?", "What is the default timeout?", "How do I rotate keys?",
             "Where are logs written?"]


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def conversation_count(url: str) -> int:
    with PostgresStore(url, embedding_dim=DIM) as store:
        return len(list(store.iter_conversations()))


def test_eight_concurrent_clients_are_all_answered_in_shared_batches(tmp_path: Path, serve_db: str) -> None:  # noqa: F811
    cfg = serve_cfg(tmp_path, serve_db, "serve.batch_wait_ms=200", "serve.max_batch_size=8")
    before = conversation_count(serve_db)
    with ServeThread(cfg) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
        barrier = threading.Barrier(len(QUESTIONS))

        def ask(question: str) -> tuple[str, str]:
            barrier.wait()
            response = client.chat.completions.create(model="promptly",
                                                      messages=[{"role": "user", "content": question}])
            return question, (response.model_extra or {})["conversation_id"]

        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            answered = list(pool.map(ask, QUESTIONS))
        text = httpx.get(f"{server.url}/metrics").text
    assert sorted(q for q, _ in answered) == sorted(QUESTIONS)
    assert len({c for _, c in answered}) == len(QUESTIONS)
    assert conversation_count(serve_db) == before + len(QUESTIONS)
    assert metric(text, "promptly_requests_total", '{method="POST",route="/v1/chat/completions",status="200"}') == 8
    batches, batched = metric(text, "promptly_batch_size_count"), metric(text, "promptly_batch_size_sum")
    assert batched == 8 and batches < 8, (batches, batched)  # requests shared generation batches
    assert metric(text, "promptly_tokens_generated_total") >= 8
    assert metric(text, "promptly_retrieval_seconds_count") == 8
    assert metric(text, "promptly_time_to_first_token_seconds_count") == 8


def test_overload_is_429_with_retry_after_and_timeout_is_504(tmp_path: Path, serve_db: str) -> None:  # noqa: F811
    # one request admitted at a time, answering with 400 tokens but allowed only 0.3 s
    cfg = serve_cfg(tmp_path, serve_db, "serve.max_pending=1", "serve.request_timeout_s=0.3",
                    "generation.max_new_tokens=400")
    before = conversation_count(serve_db)
    with ServeThread(cfg) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)
        body = {"model": "promptly", "messages": [{"role": "user", "content": QUESTION}]}
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(httpx.post, f"{server.url}/v1/chat/completions", json=body, timeout=60)
            while "promptly_pending_requests 1.0" not in httpx.get(f"{server.url}/metrics").text:
                time.sleep(0.01)
            with pytest.raises(openai.RateLimitError) as busy:
                client.chat.completions.create(**body)
            timed_out = first.result()
        text = httpx.get(f"{server.url}/metrics").text
    assert int(busy.value.response.headers["Retry-After"]) >= 1
    assert "busy" in busy.value.message
    assert timed_out.status_code == 504
    assert "request_timeout_s" in timed_out.json()["error"]["message"]
    assert conversation_count(serve_db) == before  # neither stored anything
    assert metric(text, "promptly_rejected_requests_total", '{reason="overloaded"}') == 1
    assert metric(text, "promptly_rejected_requests_total", '{reason="timeout"}') == 1
