"""Stateless replicas: two real `promptly serve` processes on one Postgres store, generating through one
OpenAI-compatible engine (serve.engine=openai, so neither loads a model). The official `openai` client
alternates between them: every answered question is one conversation row; a promotion in the store is
seen by both; /readyz of each follows the engine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from promptly.store.base import ModelVersion
from promptly.store.postgres import PostgresStore

from .cloud.openai_server import OpenAIServer
from .conftest import DIM, REPO_ROOT
from .serve_fixtures import QUESTION, serve_db  # noqa: F401  (a fixture)

ENGINE_KEY = "sk-replicas"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


class Replica:
    """One `promptly serve` process (python -m promptly.verbs.cli serve ...) on a free port."""

    def __init__(self, home: Path, store_url: str, engine_url: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "promptly", "serve", f"paths.data_dir={REPO_ROOT / 'sample_data'}",
                f"paths.state_dir={home / 'state'}", f"paths.log_dir={home / 'logs'}", "store=postgres",
                f"store.url='{store_url}'", "serve.port=0", "serve.poll_seconds=0.5", "serve.engine=openai",
                f"serve.openai.base_url={engine_url}", "serve.openai.model=engine-a",
                "serve.openai.health_poll_s=0.5", "serve.openai.max_retries=0", "serve.redact_conversations=false"]
        env = {**os.environ, "PROMPTLY_ENGINE_API_KEY": ENGINE_KEY, "WANDB_MODE": "offline"}
        self.proc = subprocess.Popen(args, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self.url = ""
        self._found = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if (match := LISTENING.search(line)) and not self.url:
                self.url = match[1]
                self._found.set()

    def wait_ready(self, timeout_s: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        if not self._found.wait(timeout_s):
            raise AssertionError("no 'listening on' line:\n" + "".join(self.lines[-30:]))
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.url}/readyz", timeout=10)
            if response.status_code == 200:
                return dict(response.json())
            time.sleep(0.2)
        raise AssertionError(f"{self.url} not ready: {response.text}\n" + "".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def engine() -> Iterator[OpenAIServer]:
    with OpenAIServer(lambda body: f"{body['model']} answers.", model="engine-a", api_key=ENGINE_KEY,
                      also_serves=("engine-b",)) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, serve_db: str,  # noqa: F811
             engine: OpenAIServer) -> Iterator[list[Replica]]:
    started = [Replica(tmp_path_factory.mktemp(f"replica{n}"), serve_db, engine.base_url) for n in (1, 2)]
    try:
        for replica in started:
            assert replica.wait_ready()["model"] == "engine-a"
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_two_replicas_store_each_answer_once_and_both_follow_a_promotion(
        replicas: list[Replica], engine: OpenAIServer, serve_db: str) -> None:  # noqa: F811
    clients = [openai.OpenAI(base_url=f"{r.url}/v1", api_key="unused", max_retries=0, timeout=60) for r in replicas]
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        before = {c.id for c in store.iter_conversations()}
    asked = [f"{QUESTION} (question {n})" for n in range(6)]
    answered = []
    for n, question in enumerate(asked):  # alternate: 1, 2, 1, 2, ...
        response = clients[n % 2].chat.completions.create(model="promptly",
                                                          messages=[{"role": "user", "content": question}])
        assert response.choices[0].message.content == "engine-a answers."
        answered.append((response.model_extra or {})["conversation_id"])
    assert len(set(answered)) == len(asked)
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        new = [c for c in store.iter_conversations() if c.id not in before]
        assert sorted(c.id for c in new) == sorted(answered)  # one row per answered question, none twice
        assert sorted(c.question for c in new) == sorted(asked)

        # A promotion in the shared store: both replicas switch at their next poll, without a restart.
        store.add_model_version(ModelVersion(version="v1", repo_id="team/docs-bot", revision="r1",
                                             config={"engine_model": "engine-b"}))
        store.promote_model_version("team/docs-bot", "v1")
    deadline = time.monotonic() + 20
    for replica in replicas:
        while httpx.get(f"{replica.url}/readyz").json().get("model") != "team/docs-bot@v1":
            assert time.monotonic() < deadline, f"{replica.url} did not follow the promotion"
            time.sleep(0.2)
    sent = len(engine.requests)
    for client in clients:
        response = client.chat.completions.create(model="team/docs-bot@v1",
                                                  messages=[{"role": "user", "content": QUESTION}])
        assert response.model == "team/docs-bot@v1" and response.choices[0].message.content == "engine-b answers."
    assert [r["model"] for r in engine.requests[sent:]] == ["engine-b", "engine-b"]
    with PostgresStore(serve_db, embedding_dim=DIM) as store:
        versions = [c.model_version for c in store.iter_conversations() if c.id not in before]
    assert versions.count("team/docs-bot@v1") == 2 and versions.count("engine-a") == len(asked)


def test_both_replicas_say_not_ready_while_the_engine_is_gone(replicas: list[Replica],
                                                              engine: OpenAIServer) -> None:
    engine.__exit__()
    deadline = time.monotonic() + 15
    for replica in replicas:
        while (ready := httpx.get(f"{replica.url}/readyz")).status_code != 503:
            assert time.monotonic() < deadline, f"{replica.url} still ready without its engine"
            time.sleep(0.2)
        assert "unreachable" in ready.json()["reason"] and ready.json()["engine"] == "openai"
