"""`serve.engine=openai`: promptly retrieves, prompts, cites and stores; a local OpenAI-compatible server
(tests/cloud/openai_server.py, streaming like vLLM) generates. No local model is loaded. An engine that
fails, hangs or goes away is a 502/503 with the reason within a bounded time, and /readyz says so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from promptly.data.tables import linearize_tables
from promptly.store.postgres import PostgresStore

from .cloud.openai_server import OpenAIServer, Reply
from .cloud.promptly_server import ServeThread
from .conftest import DIM, REPO_ROOT, compose, resolved
from .serve_fixtures import QUESTION, serve_db  # noqa: F401  (a fixture)

ENGINE_KEY = "sk-engine-test"
FAILING, HANGING = "please fail", "please hang"
SOURCE_LINE = re.compile(r"^\[\d+\] ", re.MULTILINE)
ANSWER = "Engine reply: zebra 3 quartz."  # what the engine says when it was shown three numbered sources


def engine_cfg(home: Path, url: str, base_url: str, *overrides: str) -> Any:
    """`promptly serve` with no local model: generation goes to the engine at `base_url`."""
    return resolved(compose("serve", [
        f"paths.data_dir={REPO_ROOT / 'sample_data'}", f"paths.state_dir={home / 'state'}",
        f"paths.log_dir={home / 'logs'}", "store=postgres", f"store.url='{url}'", "serve.port=0",
        "serve.engine=openai", f"serve.openai.base_url={base_url}", "serve.openai.model=engine-a",
        "serve.openai.health_poll_s=0.5", "serve.openai.timeout_s=1", "serve.openai.max_retries=1",
        "serve.redact_conversations=false", *overrides]))


def reply(body: dict[str, Any]) -> str | Reply:
    user = body["messages"][-1]["content"]
    if FAILING in user:
        return Reply("the engine broke", status=500)
    if HANGING in user:
        return Reply("too late", delay_s=4)
    shown = len(SOURCE_LINE.findall(user))
    return f"Engine reply: zebra {shown} quartz."


@pytest.fixture(scope="module")
def engine(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch_module.setenv("PROMPTLY_ENGINE_API_KEY", ENGINE_KEY)
    with OpenAIServer(reply, model="engine-a", api_key=ENGINE_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, serve_db: str,  # noqa: F811
           engine: OpenAIServer) -> Iterator[ServeThread]:
    with ServeThread(engine_cfg(tmp_path_factory.mktemp("serve"), serve_db, engine.base_url)) as s:
        yield s


@pytest.fixture
def client(server: ServeThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def store(serve_db: str) -> Iterator[PostgresStore]:  # noqa: F811
    s = PostgresStore(serve_db, embedding_dim=DIM)
    yield s
    s.close()


def test_no_local_model_and_ready_names_the_engine_model(server: ServeThread, client: openai.OpenAI) -> None:
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "model": "engine-a", "engine": "openai",
                                                        "engine_model": "engine-a"}
    assert {m.id for m in client.models.list()} == {"engine-a", "promptly"}


def test_engine_answers_with_our_sources_and_the_answer_is_stored(client: openai.OpenAI, engine: OpenAIServer,
                                                                  store: PostgresStore) -> None:
    sent = len(engine.requests)
    response = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUESTION}],
                                              extra_body={"k": 3})
    extra = response.model_extra or {}
    citations = extra["citations"]
    assert [c["number"] for c in citations] == [1, 2, 3]
    request = engine.requests[sent]
    assert request["model"] == "engine-a" and request["stream"] is True
    assert engine.headers[sent]["authorization"] == f"Bearer {ENGINE_KEY}"  # the key from the environment
    system, user = request["messages"]
    assert system["role"] == "system" and user["role"] == "user" and QUESTION in user["content"]
    for c in citations:  # the engine saw exactly the numbered sources the answer cites
        assert f"[{c['number']}] " in user["content"] and linearize_tables(c["content"]) in user["content"]
    answer = response.choices[0].message.content
    assert answer == ANSWER
    assert response.usage is not None and response.usage.completion_tokens == len(answer.split())
    conv = next(c for c in store.iter_conversations() if c.id == extra["conversation_id"])
    assert (conv.question, conv.answer, conv.model_version) == (QUESTION, answer, "engine-a")
    assert list(conv.chunk_ids) == [c["chunk_id"] for c in citations]


def test_stream_passes_through_and_ends_with_citations(client: openai.OpenAI, store: PostgresStore) -> None:
    chunks = list(client.chat.completions.create(model="promptly", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": QUESTION}]))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3  # piece by piece, as the engine sent them
    text = "".join(deltas)
    assert text == ANSWER
    last = [c for c in chunks if c.choices][-1]
    extra = last.model_extra or {}
    assert last.choices[0].finish_reason == "stop" and len(extra["citations"]) == 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(deltas)
    conv = next(c for c in store.iter_conversations() if c.id == extra["conversation_id"])
    assert conv.answer == text


@pytest.mark.parametrize("stream", [False, True])
def test_engine_error_is_502_with_the_reason_and_nothing_stored(client: openai.OpenAI, store: PostgresStore,
                                                                stream: bool) -> None:
    before = len(list(store.iter_conversations()))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="promptly", stream=stream,
                                       messages=[{"role": "user", "content": f"{QUESTION} {FAILING}"}])
    assert raised.value.status_code == 502
    assert "answered 500: the engine broke" in raised.value.message
    assert time.monotonic() - started < 15
    assert len(list(store.iter_conversations())) == before


def test_a_hanging_engine_is_503_within_its_timeouts(client: openai.OpenAI, store: PostgresStore) -> None:
    before = len(list(store.iter_conversations()))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="promptly",
                                       messages=[{"role": "user", "content": f"{QUESTION} {HANGING}"}])
    took = time.monotonic() - started
    assert raised.value.status_code == 503
    assert "did not answer within serve.openai.timeout_s=1 s" in raised.value.message
    assert took < 3 + 2  # timeout_s=1, one retry with backoff: well before request_timeout_s (60)
    assert len(list(store.iter_conversations())) == before


def test_engine_gone_is_503_and_readyz_says_why(tmp_path: Path, serve_db: str,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLY_ENGINE_API_KEY", ENGINE_KEY)
    engine = OpenAIServer(reply, model="engine-a", api_key=ENGINE_KEY)
    with engine, ServeThread(engine_cfg(tmp_path, serve_db, engine.base_url)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)
        assert client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUESTION}])
        engine.__exit__()  # the engine goes away while promptly runs
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUESTION}])
        assert raised.value.status_code == 503 and "unreachable" in raised.value.message
        assert time.monotonic() - started < 10
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and "unreachable (serve.openai.base_url)" in ready.json()["reason"]


def test_readiness_needs_the_engine_to_serve_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptly.serving.config import OpenAIEngineSettings
    from promptly.serving.metrics import ServerMetrics
    from promptly.serving.remote import RemoteEngine

    monkeypatch.setenv("PROMPTLY_ENGINE_API_KEY", ENGINE_KEY)
    with OpenAIServer(reply, model="engine-a", api_key=ENGINE_KEY) as server:
        remote = RemoteEngine(OpenAIEngineSettings(base_url=server.base_url, model="engine-z"), ServerMetrics(), 2)
        remote.served_model = "engine-z"
        assert "does not serve 'engine-z'" in (remote.check() or "")
        remote.served_model = "engine-a"
        assert remote.check() is None
        monkeypatch.setenv("PROMPTLY_ENGINE_API_KEY", "wrong")
        refused = RemoteEngine(OpenAIEngineSettings(base_url=server.base_url, model="engine-a"), ServerMetrics(), 2)
        assert "answered 401" in (refused.check() or "")
