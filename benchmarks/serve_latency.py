"""Latency and throughput of `promptly serve` against the same answer path called in-process.

The tiny local model (random weights; answers are noise but cost what real tokens cost) answers the
sample corpus's questions with retrieval (k=3, hybrid) and greedy generation of up to --max-new-tokens
tokens on an embedded store holding the sample corpus (ingested once under --state). In one run:

- baseline: `Retriever` + `Answerer.answer` in-process, one question at a time (p50/p99, questions/s);
- API, 1 client: POST /v1/chat/completions one at a time over HTTP (p50/p99), so the difference from
  the baseline's p50 is what HTTP, JSON, the queue and storing the conversation add;
- API, 8 clients: eight threads at once (p50/p99, questions/s): the batcher generates them together;
- TTFT: streamed requests, one client, time until the first content chunk arrives.

The last line is `api_overhead_p50=<fraction> throughput_gain_8=<ratio> ttft_p50_ms=<ms>`
(throughput_gain_8: API questions/s at 8 clients over the in-process sequential questions/s).
Goals: overhead <= 0.10, gain >= 3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from promptly.answering import Answerer
from promptly.hydra_entry import config_dir
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.sync import sync_documents
from promptly.model.config import SamplingConfig
from promptly.model.loading import load_model
from promptly.retrieval import Retriever
from promptly.serving.command import build
from promptly.serving.config import resolved_copy
from promptly.store.embedded import EmbeddedPostgresStore

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def serve_config(state: Path, max_new_tokens: int, wait_ms: float) -> DictConfig:
    overrides = [f"paths.root_dir={state}", f"paths.output_dir={state}", f"paths.data_dir={ROOT / 'sample_data'}",
                 f"store.data_dir={state / 'pgdata'}", "model=tiny", f"generation.max_new_tokens={max_new_tokens}",
                 "retrieval.k=3", "serve.port=0", "serve.max_batch_size=8", f"serve.batch_wait_ms={wait_ms}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return resolved_copy(compose(config_name="serve", overrides=overrides))


def ensure_corpus(cfg: DictConfig) -> None:
    store = EmbeddedPostgresStore(cfg.store.data_dir, embedding_dim=int(cfg.embedder.dimension))
    store.migrate()
    if store.status().chunks == 0:
        chunker = TokenChunker()
        report = sync_documents(load_source(SourceConfig(path=str(ROOT / "sample_data" / "docs")),
                                            chunker.fingerprint()), store, chunker, Embedder())
        assert report.ok, report.failed
    store.close()


def in_process_answerer(cfg: DictConfig) -> tuple[Answerer, EmbeddedPostgresStore]:
    """Retrieval + generation through the one answer path, with the server's settings, one at a time."""
    store = EmbeddedPostgresStore(cfg.store.data_dir, embedding_dim=int(cfg.embedder.dimension))
    sampling = SamplingConfig(**{**cfg.generation, "batch_size": 1})
    retriever = Retriever(store, Embedder(), k=int(cfg.retrieval.k), mode=str(cfg.retrieval.mode))
    return Answerer(load_model(cfg), retriever, sampling), store


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def over_http(url: str, questions: list[str], clients: int) -> tuple[list[float], float]:
    """Seconds per request and the wall clock of all, with `clients` threads."""
    local = threading.local()

    def ask(q: str) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=300)
        started = time.perf_counter()
        r = local.client.post(f"{url}/v1/chat/completions",
                              json={"model": "promptly", "messages": [{"role": "user", "content": q}]})
        r.raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(ask, questions))
    return latencies, time.perf_counter() - started


def ttft(url: str, questions: list[str]) -> list[float]:
    out = []
    with httpx.Client(timeout=300) as client:
        for q in questions:
            started, first = time.perf_counter(), None
            body = {"model": "promptly", "stream": True, "messages": [{"role": "user", "content": q}]}
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if first is None and line.startswith("data: {") and '"content": "' in line \
                            and '"content": ""' not in line:
                        first = time.perf_counter() - started
            out.append(first if first is not None else time.perf_counter() - started)
    return out


def summary(metrics: str) -> str:
    """Mean batch size, retrieval and generation-batch seconds, from the server's /metrics."""
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))

    def mean(name: str) -> float:
        return float(values[f"{name}_sum"]) / max(1.0, float(values[f"{name}_count"]))

    return (f"mean batch {mean('promptly_batch_size'):.2f} requests, retrieval "
            f"{mean('promptly_retrieval_seconds') * 1000:.1f} ms, generation batch "
            f"{mean('promptly_generation_seconds') * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=ROOT / ".promptly" / "bench" / "serve")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=50.0)
    args = parser.parse_args()
    cfg = serve_config(args.state.resolve(), args.max_new_tokens, args.batch_wait_ms)
    ensure_corpus(cfg)
    lines = (ROOT / "sample_data" / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines][: args.questions]

    answerer, store = in_process_answerer(cfg)
    server = uvicorn.Server(uvicorn.Config(build(cfg), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    while httpx.get(f"{url}/readyz").status_code != 200:
        time.sleep(0.1)
    answerer.answer(questions[:4])  # warm-up
    over_http(url, questions[:4], 1)
    # in-process and over HTTP alternate question by question: a shared machine's load hits both alike
    base, one = [], []
    for q in questions:
        base.append(timed(lambda q=q: answerer.answer([q])))
        one.append(over_http(url, [q], 1)[0][0])
    base_qps = len(base) / sum(base)
    eight, wall = over_http(url, questions, 8)
    first = ttft(url, questions[:16])
    served = summary(httpx.get(f"{url}/metrics").text)
    server.should_exit = True
    thread.join(timeout=30)
    store.close()

    def row(name: str, values: list[float], qps: float) -> None:
        print(f"{name:<22} p50={statistics.median(values) * 1000:7.1f} ms  p99={percentile(values, 99) * 1000:7.1f} ms"
              f"  {qps:6.2f} questions/s", flush=True)

    row("in-process, 1 at once", base, base_qps)
    row("API, 1 client", one, len(one) / sum(one))
    row("API, 8 clients", eight, len(eight) / wall)
    print(f"TTFT (streamed, 1 client) p50={statistics.median(first) * 1000:.1f} ms "
          f"p99={percentile(first, 99) * 1000:.1f} ms")
    overhead = statistics.median(one) / statistics.median(base) - 1
    gain = (len(eight) / wall) / base_qps
    print(f"server: {served}")
    print(f"api_overhead_p50={overhead:.3f} throughput_gain_8={gain:.2f} "
          f"ttft_p50_ms={statistics.median(first) * 1000:.1f}")


if __name__ == "__main__":
    main()
