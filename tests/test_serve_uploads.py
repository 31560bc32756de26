"""Uploads through the API: the upload ingestion (PII redacted) with the owner on every chunk, seen in
answers by its owner only (and by `scope: own` alone); bad files refused with nothing stored. Then a
newly promoted model version is served without a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hydra.utils import instantiate

from promptly.store.base import ModelVersion
from promptly.store.postgres import PostgresStore

from .cloud.promptly_server import ServeThread
from .conftest import DIM
from .serve_fixtures import serve_cfg, serve_db  # noqa: F401  (a fixture)

NOTE = ("# Heron cluster notes\n\nThe heron cluster rotates its TLS certificates every 41 days. "
        "Questions go to ops-lead@corp-mail.net or +1 415 555 0134.\n")
QUERY = "How often does the heron cluster rotate its TLS certificates?"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-uploads")


@pytest.fixture(scope="module")
def server(home: Path, serve_db: str) -> Iterator[ServeThread]:  # noqa: F811
    cfg = serve_cfg(home, serve_db, "serve.follow_active=true", "serve.poll_seconds=0.3")
    with ServeThread(cfg) as s:
        s.cfg = cfg  # type: ignore[attr-defined]
        yield s


def retrieve(server: ServeThread, **body: object) -> list[str]:
    response = httpx.post(f"{server.url}/v1/retrieve", json={"query": QUERY, "k": 5, **body})
    assert response.status_code == 200, response.text
    return [c["document_id"] for c in response.json()["data"]]


def upload(server: ServeThread, user: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/uploads", files={"file": (name, data)}, data={"user": user}, timeout=120)


def test_an_upload_is_redacted_owned_and_seen_by_its_owner_only(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    response = upload(server, "alice", "heron.md", NOTE.encode())
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["document_id"] == "uploads/alice/heron.md" and result["chunks_written"] >= 1
    assert result["redacted"].get("EMAIL_ADDRESS") == 1
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        chunks = list(store.iter_chunks(["uploads/alice/heron.md"]))
    assert chunks and all(c.metadata["owner"] == "alice" for c in chunks)
    assert all("ops-lead@corp-mail.net" not in c.content for c in chunks)
    assert retrieve(server, user="alice")[0] == "uploads/alice/heron.md"
    assert retrieve(server, user="alice", scope="own") == ["uploads/alice/heron.md"]
    assert "uploads/alice/heron.md" not in retrieve(server, user="bob")
    assert "uploads/alice/heron.md" not in retrieve(server)  # anonymous
    assert retrieve(server, user="bob", scope="own") == []
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUERY}],
                                            user="alice", extra_body={"scope": "own"})
    assert [c["document_id"] for c in (answer.model_extra or {})["citations"]] == ["uploads/alice/heron.md"]


@pytest.mark.parametrize(("name", "data", "status", "reason"), [
    ("tool.exe", b"MZ\x90\x00", 400, "only"),
    ("empty.md", b"   \n", 400, "empty"),
    ("broken.pdf", b"%PDF-1.4 not really a pdf", 400, "could not be read"),
    ("latin1.txt", "caf\u00e9".encode("latin-1"), 400, "UTF-8"),
])
def test_a_bad_upload_is_refused_and_nothing_is_stored(server: ServeThread, serve_db: str, name: str,  # noqa: F811
                                                       data: bytes, status: int, reason: str) -> None:
    response = upload(server, "carol", name, data)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]["message"]
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        assert not list(store.iter_chunks([f"uploads/carol/{name}"]))
    assert not (Path(server.cfg.serve.uploads_dir) / "carol" / name).exists()  # type: ignore[attr-defined]
    assert upload(server, "../x", "a.md", b"text").status_code == 400


def test_a_promoted_version_is_served_without_a_restart(server: ServeThread, serve_db: str, home: Path) -> None:  # noqa: F811
    folder = home / "export-v1"
    factory = instantiate(server.cfg.model)  # type: ignore[attr-defined]
    factory.build(with_peft=False).save_pretrained(folder)
    factory.load_tokenizer().save_pretrained(folder)
    (folder / "promptly.json").write_text(json.dumps({"adapter_only": False, "base_model": "tiny"}))
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        store.add_model_version(ModelVersion(version="v1", repo_id="local/served", config={"location": str(folder)}))
        store.promote_model_version("local/served", "v1")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    import time

    deadline = time.monotonic() + 60
    while "local/served@v1" not in {m.id for m in client.models.list()}:
        assert time.monotonic() < deadline, "the promoted version was never served"
        time.sleep(0.2)
    answer = client.chat.completions.create(model="local/served@v1", messages=[{"role": "user", "content": QUERY}])
    assert answer.model == "local/served@v1"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": QUERY}])
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        conv = next(c for c in store.iter_conversations()
                    if c.id == (answer.model_extra or {})["conversation_id"])
    assert conv.model_version == "local/served@v1"
    assert "promptly_model_switches_total 1.0" in httpx.get(f"{server.url}/metrics").text
