"""`promptly serve` as OpenAI clients see it: the official `openai` client against the running server,
plain and streamed completions with citations, every bad input a 4xx with a reason (nothing stored),
feedback on stored conversations, /v1/retrieve filters, answer styles and the optional API key; every forward pass
of an answer on the one compute thread (promptly/serving/compute.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import openai
import pytest

from promptly.serving.compute import on_compute_thread
from promptly.store.postgres import PostgresStore

from .cloud.promptly_server import ServeThread
from .conftest import DIM
from .serve_fixtures import QUESTION, serve_cfg, serve_db  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, serve_db: str) -> Iterator[ServeThread]:  # noqa: F811
    with ServeThread(serve_cfg(tmp_path_factory.mktemp("serve"), serve_db)) as s:
        yield s


@pytest.fixture
def client(server: ServeThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def store(serve_db: str) -> Iterator[PostgresStore]:  # noqa: F811
    s = PostgresStore(serve_db, embedding_dim=DIM)
    yield s
    s.close()


def conversations(store: PostgresStore) -> list:  # type: ignore[type-arg]
    return list(store.iter_conversations())


def test_health_ready_and_models(server: ServeThread, client: openai.OpenAI) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "model": "tiny"}
    assert {m.id for m in client.models.list()} == {"tiny", "promptly"}


def test_completion_carries_citations_and_is_stored(client: openai.OpenAI, store: PostgresStore) -> None:
    before = len(conversations(store))
    response = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}],
                                              extra_body={"k": 3})
    extra = response.model_extra or {}
    citations = extra["citations"]
    assert response.model == "tiny" and response.object == "chat.completion"
    assert isinstance(response.choices[0].message.content, str) and response.usage is not None
    assert [c["number"] for c in citations] == [1, 2, 3]
    assert any(c["document_id"].startswith("driftsync/") for c in citations)
    stored = {c.id: c for c in store.iter_chunks()}
    for c in citations:
        assert (stored[c["chunk_id"]].document_id, stored[c["chunk_id"]].ordinal) == (c["document_id"], c["ordinal"])
        assert c["title"] == stored[c["chunk_id"]].metadata["title"]
    convs = conversations(store)
    assert len(convs) == before + 1
    conv = next(c for c in convs if c.id == extra["conversation_id"])
    assert (conv.question, conv.answer, conv.model_version) == (QUESTION, response.choices[0].message.content, "tiny")
    assert list(conv.chunk_ids) == [c["chunk_id"] for c in citations]


def test_streamed_answer_equals_the_plain_one_and_ends_with_citations(client: openai.OpenAI,
                                                                      store: PostgresStore) -> None:
    plain = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUESTION}])
    chunks = list(client.chat.completions.create(model="promptly", stream=True,
                                                 messages=[{"role": "user", "content": QUESTION}],
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content  # greedy: the same answer, token by token
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert (last.model_extra or {})["citations"] == (plain.model_extra or {})["citations"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    conv = next(c for c in conversations(store) if c.id == (last.model_extra or {})["conversation_id"])
    assert conv.answer == text


BAD_REQUESTS = {
    "no messages": ({"model": "tiny"}, openai.BadRequestError, "messages"),
    "empty messages": ({"model": "tiny", "messages": []}, openai.BadRequestError, "no user message"),
    "empty question": ({"model": "tiny", "messages": [{"role": "user", "content": "  "}]}, openai.BadRequestError,
                       "empty"),
    "too many tokens": ({"model": "tiny", "messages": [{"role": "user", "content": "word " * 3000}]},
                        openai.BadRequestError, "tokens"),
    "max_tokens too large": ({"model": "tiny", "messages": [{"role": "user", "content": QUESTION}],
                              "max_tokens": 100000}, openai.BadRequestError, "max_tokens"),
    "unknown model": ({"model": "gpt-9", "messages": [{"role": "user", "content": QUESTION}]},
                      openai.NotFoundError, "gpt-9"),
    "filter not an object": ({"model": "tiny", "messages": [{"role": "user", "content": QUESTION}],
                              "filter": ["document_id"]}, openai.BadRequestError, "filter"),
    "unknown style": ({"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "style": "poem"},
                      openai.BadRequestError, "style"),
    "bad user name": ({"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "user": "../etc"},
                      openai.BadRequestError, "user"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_with_a_reason_and_stores_nothing(case: str, client: openai.OpenAI,
                                                             store: PostgresStore) -> None:
    body, error, reason = BAD_REQUESTS[case]
    before = len(conversations(store))
    with pytest.raises(error) as caught:
        client.post("/chat/completions", body=body, cast_to=object)
    assert 400 <= caught.value.status_code < 500
    assert reason in caught.value.message
    assert len(conversations(store)) == before


def test_feedback_on_a_stored_conversation(server: ServeThread, client: openai.OpenAI, store: PostgresStore) -> None:
    response = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}])
    conversation_id = (response.model_extra or {})["conversation_id"]
    ok = httpx.post(f"{server.url}/v1/feedback", json={"conversation_id": conversation_id, "feedback": "up"})
    assert ok.status_code == 200
    assert next(c for c in conversations(store) if c.id == conversation_id).feedback == "up"
    for body, status in [({"conversation_id": "not-a-uuid", "feedback": "up"}, 400),
                         ({"conversation_id": "00000000-0000-4000-8000-000000000000", "feedback": "up"}, 404),
                         ({"conversation_id": conversation_id, "feedback": "sideways"}, 400),
                         ({"feedback": "up"}, 400)]:
        bad = httpx.post(f"{server.url}/v1/feedback", json=body)
        assert bad.status_code == status, (body, bad.text)
        assert bad.json()["error"]["message"]
    assert next(c for c in conversations(store) if c.id == conversation_id).feedback == "up"


def test_retrieve_with_a_metadata_filter(server: ServeThread) -> None:
    everywhere = httpx.post(f"{server.url}/v1/retrieve", json={"query": QUESTION, "k": 5}).json()["data"]
    assert len(everywhere) == 5 and all(c["content"] for c in everywhere)
    document = everywhere[-1]["document_id"]
    scoped = httpx.post(f"{server.url}/v1/retrieve", json={"query": QUESTION, "k": 5,
                                                            "filter": {"document_id": document}}).json()["data"]
    assert scoped and {c["document_id"] for c in scoped} == {document}
    for body in [{"query": QUESTION, "filter": "document_id"}, {"query": ""}, {"query": QUESTION, "k": 0}]:
        assert httpx.post(f"{server.url}/v1/retrieve", json=body).status_code == 400


def test_answer_style_selects_the_system_prompt(client: openai.OpenAI) -> None:
    def prompt_tokens(**extra: object) -> int:
        response = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUESTION}],
                                                  max_tokens=1, extra_body=extra)
        assert response.usage is not None
        return response.usage.prompt_tokens

    default, short, detailed = prompt_tokens(), prompt_tokens(style="short"), prompt_tokens(style="detailed")
    custom = prompt_tokens(instruction="Reply like a pirate. " * 5)
    assert len({default, short, detailed, custom}) == 4


def test_api_key_from_the_environment(server: ServeThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLY_API_KEY", "sk-serve-test-key")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
    keyed = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-serve-test-key", max_retries=0)
    assert {m.id for m in keyed.models.list()} == {"tiny", "promptly"}
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes need no key


def test_a_served_answer_runs_every_forward_pass_on_the_compute_thread(server: ServeThread) -> None:
    engine = server.app.state.promptly.engine
    seen: list[tuple[str, int]] = []
    modules = {"generator": engine.slot().loaded.model, "embedder": engine.embedder.model}
    hooks = [m.register_forward_pre_hook(lambda *_, name=name: seen.append((name, threading.get_ident())))
             for name, m in modules.items()]
    try:
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "model": "tiny", "messages": [{"role": "user", "content": QUESTION}]})
    finally:
        for hook in hooks:
            hook.remove()
    assert response.status_code == 200, response.text
    compute_ident = on_compute_thread(threading.get_ident)
    assert {name for name, _ in seen} == {"generator", "embedder"}
    assert {ident for _, ident in seen} == {compute_ident}
    assert compute_ident not in {server.thread.ident, threading.get_ident()}
