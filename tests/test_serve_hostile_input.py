"""`promptly serve` against a hostile client: text Postgres or the tokenizer cannot take (a NUL, a lone UTF-16
surrogate) is a 400 naming the field on every route, never a 500; each client error is one log line without a
traceback; a 401 is counted under its route in /metrics; a key sent without "Bearer " is refused; and one
user's large upload leaves k results for everyone else."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from promptly.records import Chunk, Document, sha256_hex
from promptly.store.postgres import PostgresStore

from .cloud.promptly_server import ServeThread
from .conftest import DIM
from .serve_fixtures import QUESTION, serve_cfg, serve_db  # noqa: F401  (a fixture)

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, serve_db: str) -> Iterator[ServeThread]:  # noqa: F811
    with ServeThread(serve_cfg(tmp_path_factory.mktemp("serve"), serve_db)) as s:
        yield s


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Our loggers and uvicorn's (which does not propagate to the root logger caplog listens on)."""
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    uvicorn_logger.removeHandler(caplog.handler)


def post(server: ServeThread, route: str, body: dict, **headers: str) -> httpx.Response:  # type: ignore[type-arg]
    # json.dumps escapes the NUL and the surrogate as \u0000 and \ud800: valid JSON, as any client sends it
    return httpx.post(f"{server.url}{route}", content=json.dumps(body), timeout=60,
                      headers={"content-type": "application/json", **headers})


def chat_body(content: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], **extra}


HOSTILE = [
    (CHAT, chat_body("how many\x00 passphrases?"), "messages.0.content", "NUL"),
    (CHAT, chat_body("how many \ud800 passphrases?"), "messages.0.content", "surrogate"),
    (CHAT, chat_body([{"type": "text", "text": "parts \udfff too"}]), "messages.0.content", "surrogate"),  # type: ignore[arg-type]
    (CHAT, chat_body(QUESTION, filter={"document_id": "a\x00b"}), "filter", "NUL"),
    (CHAT, chat_body(QUESTION, filter={"k\ud800": "v"}), "filter", "surrogate"),
    (CHAT, chat_body(QUESTION, instruction="be\x00 brief"), "instruction", "NUL"),
    (CHAT, {**chat_body(QUESTION), "model": "ti\x00ny"}, "model", "NUL"),
    ("/v1/retrieve", {"query": "retry\x00 queue"}, "query", "NUL"),
    ("/v1/retrieve", {"query": "retry \ud800 queue"}, "query", "surrogate"),
    ("/v1/retrieve", {"query": "retry queue", "filter": {"owner": "\x00"}}, "filter", "NUL"),
    ("/v1/feedback", {"conversation_id": "\x00", "feedback": "up"}, "conversation_id", "NUL"),
]


@pytest.mark.parametrize(("route", "body", "field", "kind"), HOSTILE,
                         ids=[f"{r.rsplit('/', 1)[-1]}-{f}-{k}" for r, _, f, k in HOSTILE])
def test_text_postgres_cannot_take_is_a_400_naming_the_field(server: ServeThread, server_log: pytest.LogCaptureFixture,
                                                             route: str, body: dict, field: str,  # type: ignore[type-arg]
                                                             kind: str) -> None:
    response = post(server, route, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and kind in error["message"] and error["message"].startswith(
        f"invalid request: {field}"), error
    lines = [r for r in server_log.records if r.name.startswith(("promptly", "uvicorn"))]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith(f"POST {route} 400: invalid request: {field}")
    assert not any(r.exc_info for r in lines) and "Exception in ASGI" not in server_log.text


def test_client_errors_raised_in_a_route_log_one_line_without_a_traceback(
        server: ServeThread, server_log: pytest.LogCaptureFixture) -> None:
    """ConfigError, EmptyInputError and ModelNotFoundError are raised inside the routes: they used to reach
    Starlette's outermost handler, which answers and then re-raises, so uvicorn logged a traceback each."""
    cases = [(chat_body(""), 400, "empty"), ({**chat_body(QUESTION), "model": "gpt-9"}, 404, "not served"),
             (chat_body(QUESTION, scope="own"), 400, "scope=own"), (chat_body(QUESTION, user="../x"), 400, "user")]
    for body, status, reason in cases:
        response = post(server, CHAT, body)
        assert response.status_code == status and reason in response.json()["error"]["message"], response.text
    lines = [r.getMessage() for r in server_log.records if r.name.startswith(("promptly", "uvicorn"))]
    assert len(lines) == len(cases), lines
    assert all(line.startswith(f"POST {CHAT} 4") for line in lines), lines
    assert "Traceback" not in server_log.text and "Exception in ASGI" not in server_log.text
    assert not any(r.exc_info for r in server_log.records)


def test_the_api_key_needs_the_bearer_scheme_and_401s_count_under_their_route(
        server: ServeThread, monkeypatch: pytest.MonkeyPatch, server_log: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PROMPTLY_API_KEY", "sk-hostile-key")
    models = f"{server.url}/v1/models"
    bare = httpx.get(models, headers={"authorization": "sk-hostile-key"})
    assert bare.status_code == 401 and "Bearer" in bare.json()["error"]["message"]
    assert httpx.get(models, headers={"authorization": "Basic sk-hostile-key"}).status_code == 401
    assert httpx.get(models, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(models).status_code == 401
    assert httpx.get(models, headers={"authorization": "Bearer sk-hostile-key"}).status_code == 200
    assert httpx.get(models, headers={"authorization": "bearer  sk-hostile-key"}).status_code == 200

    metrics = httpx.get(f"{server.url}/metrics").text
    counted = [line for line in metrics.splitlines() if line.startswith("promptly_requests_total{")
               and 'status="401"' in line]
    assert counted and all('route="/v1/models"' in line for line in counted), counted
    assert float(counted[0].rsplit(" ", 1)[1]) >= 4
    assert not any('route="unmatched"' in line and 'status="401"' in line for line in metrics.splitlines())
    refusals = [r.getMessage() for r in server_log.records if r.name.startswith("promptly")]
    assert len(refusals) == 4 and all(m.startswith("GET /v1/models 401: ") for m in refusals), refusals


def test_a_large_private_upload_leaves_k_results_for_everyone_else(server: ServeThread, serve_db: str,  # noqa: F811
                                                                    embedder) -> None:  # type: ignore[no-untyped-def]
    """3,000 of alice's chunks that match the query better than anything in the sample corpus, written
    through the store API: bob and an anonymous client still get k results, none of hers, over HTTP and in
    every search mode; alice gets hers."""
    query = "quillmq retry queue config"
    k = 3
    vector = np.asarray(embedder.embed_queries([query])[0], dtype=np.float64)
    rng = np.random.default_rng(0)
    doc_id = "uploads/alice/quillmq-notes.txt"
    texts = [f"quillmq retry queue config: quillmq retry queue config note {i}" for i in range(3000)]
    document = Document(id=doc_id, text="\n".join(texts), title="notes", source="uploads/alice",
                        uri="file://notes", content_hash=sha256_hex("notes"), metadata={"owner": "alice"})
    chunks = []
    for i, text in enumerate(texts):
        v = vector + rng.normal(scale=0.01, size=DIM)
        chunks.append(Chunk(document_id=doc_id, ordinal=i, content=text, token_count=12,
                            metadata={"owner": "alice"}, embedding=tuple(float(x) for x in v / np.linalg.norm(v))))
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        assert store.upsert_document(document, chunks) == 3000
        assert {h.document_id for h in store.search(tuple(vector), query, k=k + 8)} == {doc_id}  # would starve
    try:
        for user in ("bob", None):
            body = {"query": query, "k": k, **({"user": user} if user else {})}
            data = post(server, "/v1/retrieve", body).json()["data"]
            assert len(data) == k and not any(d["document_id"].startswith("uploads/") for d in data), data
            assert any(d["document_id"].startswith("quillmq/") for d in data), data
        mine = post(server, "/v1/retrieve", {"query": query, "k": k, "user": "alice"}).json()["data"]
        assert [d["document_id"] for d in mine] == [doc_id] * k
        with PostgresStore(serve_db, embedding_dim=DIM) as store:  # the server's mode is hybrid: every mode here
            for mode in ("vector", "text", "hybrid"):
                for viewer in ("bob", ""):
                    hits = store.search(tuple(vector), query, k=k, mode=mode, viewer=viewer)  # type: ignore[arg-type]
                    assert len(hits) == k and not any(h.document_id == doc_id for h in hits), (mode, viewer)
                hers = store.search(tuple(vector), query, k=k, mode=mode, viewer="alice")  # type: ignore[arg-type]
                assert [h.document_id for h in hers] == [doc_id] * k, mode
        answer = post(server, CHAT, chat_body(query, max_tokens=2)).json()
        assert len(answer["citations"]) == k and not any(c["document_id"] == doc_id for c in answer["citations"])
    finally:
        with PostgresStore(serve_db, embedding_dim=DIM) as store:
            store.delete_documents([doc_id])
