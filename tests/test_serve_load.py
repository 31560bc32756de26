"""`promptly serve` under load: eight concurrent OpenAI clients all answered (none lost, each stored
once) with shared decode steps visible in /metrics; past serve.max_pending a 429 with Retry-After while
the admitted answer is finished; a burst past capacity answered 200 or 429 only (never a 504, never an
error after a stream's 200), and the server answers afterwards."""

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
    cfg = serve_cfg(tmp_path, serve_db, "serve.max_batch_size=8", "generation.max_new_tokens=200",
                    "generation.repetition_penalty=1.0")  # answers long enough to overlap
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
    steps, rows = metric(text, "promptly_batch_size_count"), metric(text, "promptly_batch_size_sum")
    assert rows > steps, (steps, rows)  # decode steps were shared by several requests
    assert metric(text, "promptly_tokens_generated_total") >= 8
    assert metric(text, "promptly_retrieval_seconds_count") == 8
    # every generated answer had a first token (an answer quoted from the sources generates none)
    generated = metric(text, "promptly_queue_seconds_count")
    assert generated >= 1 and metric(text, "promptly_time_to_first_token_seconds_count") == generated


def test_past_max_pending_429_with_retry_after_and_the_admitted_answer_is_finished(
        tmp_path: Path, serve_db: str) -> None:  # noqa: F811
    # one request admitted at a time, answering with 400 tokens; the timeout only bounds its start
    cfg = serve_cfg(tmp_path, serve_db, "serve.max_pending=1", "serve.request_timeout_s=20",
                    "generation.max_new_tokens=400", "generation.repetition_penalty=1.0")
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
            finished = first.result()
        text = httpx.get(f"{server.url}/metrics").text
    assert int(busy.value.response.headers["Retry-After"]) >= 1
    assert "busy" in busy.value.message
    assert finished.status_code == 200, finished.text
    assert conversation_count(serve_db) == before + 1  # the refused one stored nothing
    assert metric(text, "promptly_rejected_requests_total", '{reason="overloaded"}') == 1


def test_a_burst_past_capacity_is_200_or_429_and_no_admitted_request_times_out(
        tmp_path: Path, serve_db: str) -> None:  # noqa: F811
    # two rows, long answers, 4 s to start: 24 requests at once are far more than 4 s of work
    cfg = serve_cfg(tmp_path, serve_db, "serve.max_batch_size=2", "serve.request_timeout_s=4",
                    "generation.max_new_tokens=500", "generation.repetition_penalty=1.0")
    before = conversation_count(serve_db)
    burst = 24
    with ServeThread(cfg) as server:
        barrier = threading.Barrier(burst)

        def ask(n: int) -> tuple[int, str]:
            body = {"model": "promptly", "stream": n % 3 == 0,
                    "messages": [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}]}
            barrier.wait()
            with httpx.Client(timeout=120) as client, client.stream(
                    "POST", f"{server.url}/v1/chat/completions", json=body) as response:
                response.read()
                if response.status_code == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                return response.status_code, response.text

        with ThreadPoolExecutor(burst) as pool:
            results = list(pool.map(ask, range(burst)))
        # the token rate is measured now: a second burst is refused up front, before any retrieval, for the
        # wait that rate predicts (the first may have been refused only when its start came too late)
        barrier = threading.Barrier(burst)
        with ThreadPoolExecutor(burst) as pool:
            second = list(pool.map(ask, range(1, 3 * burst, 3)))  # none streamed
        after = httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                           json={"model": "promptly", "max_tokens": 4,
                                 "messages": [{"role": "user", "content": QUESTION}]})
        text = httpx.get(f"{server.url}/metrics").text
    codes = [code for code, _ in results]
    assert set(codes) <= {200, 429}, codes
    assert 200 in codes and 429 in codes, codes
    for n, (code, body) in enumerate(results):
        if code == 200 and n % 3 == 0:  # a stream that sent 200 ends normally: no error event after it
            assert body.rstrip().endswith("data: [DONE]") and '"error"' not in body, body[-300:]
    assert after.status_code == 200, after.text  # the server answers afterwards
    answered = codes.count(200) + [code for code, _ in second].count(200) + 1
    assert conversation_count(serve_db) == before + answered
    assert 'reason="timeout"' not in text
    assert {code for code, _ in second} <= {200, 429}
    assert any(code == 429 and "it would start in" in body for code, body in second), second
    assert metric(text, "promptly_rejected_requests_total", '{reason="queue_wait"}') >= 1
