"""Uploads through the API: 202 and a job polled to its end; the upload ingestion (PII redacted, counts
of that file only) with the owner on every chunk, seen in answers by its owner only (and by `scope: own`
alone); the job seen and cancelled by its owner only; no raw upload left on disk; bad files refused with
nothing stored; personal data in a question absent from `conversations`. Then a newly promoted model
version is served without a restart."""

from __future__ import annotations

import json
import stat
import time
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
    return httpx.post(f"{server.url}/v1/uploads", files={"file": (name, data)}, data={"user": user}, timeout=30)


def finished(server: ServeThread, job: dict[str, object], user: str, timeout_s: float = 300) -> dict[str, object]:
    """Poll GET /v1/uploads/{id} as its owner until the job has ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{server.url}/v1/uploads/{job['id']}", params={"user": user})
        assert response.status_code == 200, response.text
        state = response.json()
        if state["status"] in ("done", "failed", "cancelled"):
            return dict(state)
        assert time.monotonic() < deadline, f"upload still {state['status']}"
        time.sleep(0.1)


def uploaded(server: ServeThread, user: str, name: str, data: bytes) -> dict[str, object]:
    response = upload(server, user, name, data)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/uploads/{response.json()['id']}"
    return finished(server, response.json(), user)


def test_an_upload_is_redacted_owned_and_seen_by_its_owner_only(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    job = uploaded(server, "alice", "heron.md", NOTE.encode())
    assert job["status"] == "done", job["reason"]
    result = job["result"]
    assert isinstance(result, dict)
    assert job["document_id"] == "uploads/alice/heron.md" and result["chunks_written"] >= 1
    assert result["redacted"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert job["chunks_done"] == job["chunks_total"] == result["chunks_written"]
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        chunks = list(store.iter_chunks(["uploads/alice/heron.md"]))
    assert chunks and all(c.metadata["owner"] == "alice" for c in chunks)
    assert all("ops-lead@corp-mail.net" not in c.content and "555 0134" not in c.content for c in chunks)
    assert retrieve(server, user="alice")[0] == "uploads/alice/heron.md"
    assert retrieve(server, user="alice", scope="own") == ["uploads/alice/heron.md"]
    assert "uploads/alice/heron.md" not in retrieve(server, user="bob")
    assert "uploads/alice/heron.md" not in retrieve(server)  # anonymous
    assert retrieve(server, user="bob", scope="own") == []
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": QUERY}],
                                            user="alice", extra_body={"scope": "own"})
    assert [c["document_id"] for c in (answer.model_extra or {})["citations"]] == ["uploads/alice/heron.md"]
    clean = uploaded(server, "alice", "clean.md", b"# Clean\n\nNo personal data in this one.\n")
    assert clean["status"] == "done" and clean["result"]["redacted"] == {}  # type: ignore[index]  # this file's, not the folder's


def test_a_job_is_seen_and_cancelled_by_its_owner_only(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    text = "".join(f"Paragraph {i}: the heron ledger keeps quota snapshots for every tenant shard.\n\n"
                   for i in range(400)).encode()
    response = upload(server, "dana", "long.md", text)
    assert response.status_code == 202 and response.json()["status"] in ("queued", "running")
    job_id = response.json()["id"]
    for params in ({"user": "eve"}, {"user": "dana-not"}):
        assert httpx.get(f"{server.url}/v1/uploads/{job_id}", params=params).status_code == 404
        assert httpx.delete(f"{server.url}/v1/uploads/{job_id}", params=params).status_code == 404
    assert httpx.get(f"{server.url}/v1/uploads/{job_id}").status_code == 400  # no user: whose job?
    assert [j["id"] for j in httpx.get(f"{server.url}/v1/uploads", params={"user": "eve"}).json()["data"]] == []
    assert job_id in [j["id"] for j in httpx.get(f"{server.url}/v1/uploads", params={"user": "dana"}).json()["data"]]
    assert httpx.delete(f"{server.url}/v1/uploads/{job_id}", params={"user": "dana"}).status_code == 200
    state = finished(server, response.json(), "dana")
    assert state["status"] == "cancelled"
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        assert not list(store.iter_chunks(["uploads/dana/long.md"]))


def test_no_raw_upload_stays_on_disk(server: ServeThread) -> None:
    assert uploaded(server, "gina", "pii.md", NOTE.encode())["status"] == "done"
    root = Path(server.cfg.serve.uploads_dir)  # type: ignore[attr-defined]
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert not [p for p in root.rglob("*") if p.is_file()]  # every raw file deleted once ingested


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("tool.exe", b"MZ\x90\x00", "only"),
    ("empty.md", b"   \n", "empty"),
    ("latin1.txt", "caf\u00e9".encode("latin-1"), "UTF-8"),
])
def test_a_bad_upload_is_refused_at_once(server: ServeThread, name: str, data: bytes, reason: str) -> None:
    response = upload(server, "carol", name, data)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/v1/uploads", params={"user": "carol"}).json()["data"] == []
    assert upload(server, "../x", "a.md", b"text").status_code == 400


def test_an_unreadable_pdf_fails_its_job_and_nothing_is_stored(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    job = uploaded(server, "carol", "broken.pdf", b"%PDF-1.4 not really a pdf")
    assert job["status"] == "failed" and "could not be read" in str(job["reason"])
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        assert not list(store.iter_chunks(["uploads/carol/broken.pdf"]))


def test_personal_data_in_a_question_is_not_stored_in_conversations(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    question = "I am ops-lead@corp-mail.net, call me on +1 415 555 0134: how often are TLS certificates rotated?"
    answer = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": question}])
    conversation_id = (answer.model_extra or {})["conversation_id"]
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        stored = next(c for c in store.iter_conversations() if c.id == conversation_id)
    assert "ops-lead@corp-mail.net" not in stored.question and "555 0134" not in stored.question
    assert "<EMAIL_ADDRESS>" in stored.question and "<PHONE_NUMBER>" in stored.question
    assert stored.question.endswith("how often are TLS certificates rotated?")


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
