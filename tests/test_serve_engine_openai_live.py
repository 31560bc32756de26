"""`serve.engine=openai` against a real OpenAI-compatible server, when one is given (skipped otherwise):

    transformers serve .promptly/models/SmolLM2-135M-Instruct.Q4_1 --port 8390 &
    PROMPTLY_LIVE_ENGINE_URL=http://127.0.0.1:8390/v1 \\
    PROMPTLY_LIVE_ENGINE_MODEL=$PWD/.promptly/models/SmolLM2-135M-Instruct.Q4_1 \\
        pytest -q -s tests/test_serve_engine_openai_live.py

(vLLM, TGI, a llama.cpp server or Ollama the same way). Prints the time promptly adds to the engine's own
answer: the same messages sent to the engine directly, and through promptly (retrieval + prompt + store)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from omegaconf import OmegaConf

from promptly.data.prompts import prompt_config
from promptly.serving.remote import chat_messages
from promptly.store.postgres import PostgresStore

from .cloud.promptly_server import ServeThread
from .conftest import DIM
from .serve_fixtures import QUESTION, serve_db  # noqa: F401  (a fixture)
from .test_serve_engine_openai import engine_cfg

URL, MODEL = os.environ.get("PROMPTLY_LIVE_ENGINE_URL"), os.environ.get("PROMPTLY_LIVE_ENGINE_MODEL", "")
pytestmark = pytest.mark.skipif(not URL, reason="set PROMPTLY_LIVE_ENGINE_URL (and _MODEL) to a running engine")
PROMPT = prompt_config(None)
QUESTIONS = [QUESTION, "How do I install driftsync?", "What does driftsync do when two devices edit one file?",
             "Which port does the driftsync relay listen on?"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, serve_db: str) -> Iterator[ServeThread]:  # noqa: F811
    global PROMPT
    cfg = engine_cfg(tmp_path_factory.mktemp("live"), serve_db, str(URL), f"serve.openai.model='{MODEL}'",
                     "serve.openai.timeout_s=120", "serve.openai.max_retries=0", "generation.max_new_tokens=48")
    PROMPT = prompt_config(OmegaConf.to_container(cfg.data.prompt))  # type: ignore[arg-type]
    with ServeThread(cfg) as s:
        yield s


def test_a_real_engine_answers_streams_and_is_stored(server: ServeThread, serve_db: str) -> None:  # noqa: F811
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)
    engine = openai.OpenAI(base_url=str(URL), api_key=os.environ.get("PROMPTLY_ENGINE_API_KEY") or "none",
                           max_retries=0, timeout=300)
    direct, through, same = [], [], 0
    for question in QUESTIONS:
        started = time.perf_counter()
        response = client.chat.completions.create(model="promptly", messages=[{"role": "user", "content": question}])
        through.append(time.perf_counter() - started)
        extra = response.model_extra or {}
        assert response.choices[0].message.content and extra["citations"]
        with PostgresStore(serve_db, embedding_dim=DIM) as store:
            conv = next(c for c in store.iter_conversations() if c.id == extra["conversation_id"])
        assert conv.answer == response.choices[0].message.content
        # the engine alone, on the messages promptly sent (rendered by the same function from the cited chunks)
        messages, _ = chat_messages(PROMPT, PROMPT.system, question, extra["citations"], 16_000)
        started = time.perf_counter()
        alone = engine.chat.completions.create(model=MODEL, messages=messages, max_tokens=48,  # type: ignore[arg-type]
                                               temperature=0)
        direct.append(time.perf_counter() - started)
        same += alone.choices[0].message.content == response.choices[0].message.content
    stream = client.chat.completions.create(model="promptly", stream=True,
                                            messages=[{"role": "user", "content": QUESTION}])
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1  # streamed piece by piece from the engine
    print(f"\nlive engine {URL}: through promptly p50 {statistics.median(through):.2f} s, "
          f"engine alone (same messages) p50 {statistics.median(direct):.2f} s, over {len(QUESTIONS)} questions; "
          f"{same} of them the same answer both ways; streamed {len(pieces)} pieces")
    Path(os.environ.get("PROMPTLY_LIVE_REPORT", "/dev/null")).write_text(
        f"through={through}\ndirect={direct}\nsame={same}\npieces={len(pieces)}\n")
