"""Synthetic QA generation: concurrent requests against a model server vs one request at a time.

Baseline (measured in the same run): `promptly qa generate` with `qa_generator.concurrency=1`, one
request after another, as it worked before requests overlapped. Compared: the default concurrency (8).
Both ask the same chunks of the sample corpus (`qa.per_document` per document, regenerate on) on a
fresh embedded PostgreSQL through the real `openai` client; every reply is validated and stored as in
the CLI, so the embedding of answers for the grounding check is inside the timing.

The server is tests/cloud/openai_server.py answering each request after a fixed `--latency` (a model
decoding a reply) with one pair taken from the passage. It answers every request in that time however
many arrive at once, like a server with spare batch capacity (vLLM, llama.cpp with parallel slots), so
the speed-up shown is what overlapping hides of the latency, an upper bound for a loaded real server.
Last line: `concurrency_speedup=<chunks/s concurrent / chunks/s sequential>`; the target is >= 3.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.cloud.openai_server: the local chat-completions server

from promptly.ingest.chunking import TokenChunker  # noqa: E402
from promptly.ingest.documents import SourceConfig, load_source  # noqa: E402
from promptly.ingest.embedding import Embedder  # noqa: E402
from promptly.ingest.sync import sync_documents  # noqa: E402
from promptly.qa.config import GenerationConfig  # noqa: E402
from promptly.qa.generate import generate_pairs  # noqa: E402
from promptly.qa.generators import OpenAICompatibleGenerator  # noqa: E402
from promptly.store.embedded import EmbeddedPostgresStore  # noqa: E402
from tests.cloud.openai_server import OpenAIServer  # noqa: E402

KEY = "sk-local-bench"


def passage_reply(latency: float) -> Any:
    """A responder: after `latency` seconds, one question whose answer is the passage's first sentence."""
    def reply(body: dict[str, Any]) -> str:
        time.sleep(latency)
        user = body["messages"][-1]["content"]
        passage = user.split('"""', 2)[1].strip()
        sentence = re.split(r"(?<=[.!?])\s", re.sub(r"^#.*$", "", passage, flags=re.M).strip())[0]
        topic = " ".join(sentence.split()[:6])
        return json.dumps({"pairs": [{"question": f"What does the documentation say about {topic}?",
                                      "answer": sentence}]})
    return reply


def run(store: EmbeddedPostgresStore, embedder: Embedder, server: OpenAIServer, concurrency: int,
        per_document: int) -> tuple[float, int, int]:
    generator = OpenAICompatibleGenerator(model="local-model", base_url=server.base_url, api_key_env="BENCH_QA_KEY",
                                          max_retries=0, concurrency=concurrency)
    cfg = GenerationConfig(per_document=per_document, pairs_per_chunk=1, regenerate=True)
    started = time.perf_counter()
    report = generate_pairs(store, embedder, generator, cfg)
    return time.perf_counter() - started, report.requests, report.accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=2.0,
                        help="seconds the server takes per reply (a 7B model writing ~100 tokens of JSON)")
    parser.add_argument("--per-document", type=int, default=1, help="chunks asked per document")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    import os
    os.environ["BENCH_QA_KEY"] = KEY
    embedder = Embedder()
    with tempfile.TemporaryDirectory(prefix="promptly-bench-qa-") as tmp:
        store = EmbeddedPostgresStore(Path(tmp) / "pg", embedding_dim=embedder.dimension)
        store.migrate()
        chunker = TokenChunker(chunk_tokens=200, overlap_tokens=32)
        source = SourceConfig(path=str(ROOT / "sample_data" / "docs"))
        sync_documents(load_source(source, chunker.fingerprint()), store, chunker, embedder)
        with OpenAIServer(passage_reply(args.latency), api_key=KEY) as server:
            results = {}
            for name, n in (("sequential", 1), ("concurrent", args.concurrency)):
                seconds, requests, accepted = run(store, embedder, server, n, args.per_document)
                results[name] = requests / seconds
                print(f"{name:>10} (concurrency {n}): {requests} chunks in {seconds:.1f} s = "
                      f"{requests / seconds:.2f} chunks/s, {accepted} pairs accepted")
        store.close()
    print(f"concurrency_speedup={results['concurrent'] / results['sequential']:.2f}")


if __name__ == "__main__":
    main()
