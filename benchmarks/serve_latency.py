"""Latency and throughput of `promptly serve` against the same answer path called in-process.

Each model of --models (default: the tiny local model, random weights whose answers are noise but cost
what real tokens cost, then the packaged SmolLM2-135M-Instruct) answers the sample corpus's questions
with retrieval (k=3, hybrid) and greedy generation of up to --max-new-tokens tokens on an embedded store
holding the sample corpus (ingested once under --state). Per model:

- baseline: `Retriever` + `Answerer.answer` in-process, one question at a time (p50/p99, questions/s), on
  the server's compute thread (promptly/serving/compute.py), so the process holds one OpenMP team as a
  deployed `promptly serve` does (a second team slows every team's operators);
- API, 1 client: POST /v1/chat/completions one at a time over HTTP (p50/p99), alternating with the
  baseline question by question, so the difference of the p50s is what HTTP, JSON, admission, the
  scheduler and storing the conversation add;
- API, N clients (--clients, default 8 and 32): N threads at once; questions/s over the baseline's
  (throughput gain), the mean rows per decode step from /metrics (continuous batching), 429s;
- TTFT: streamed requests, one client, time until the first content chunk arrives.

The load average is printed beside the figures (the machine may be shared). The last line, from the
last model, is `api_overhead_p50=<fraction> throughput_gain_8=<ratio> ttft_p50_ms=<ms>`.
Goals (issue 23, with SmolLM2): overhead <= 0.10, gain >= 4.
"""

from __future__ import annotations

import argparse
import json
import os
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
from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.sync import sync_documents
from promptly.model.config import SamplingConfig
from promptly.model.loading import load_model
from promptly.retrieval import Retriever
from promptly.serving.compute import on_compute_thread
from promptly.serving.config import resolved_copy
from promptly.store.embedded import EmbeddedPostgresStore
from promptly.verbs.entry import config_dir
from promptly.verbs.serve import build

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def serve_config(state: Path, model: str, max_new_tokens: int, max_batch: int) -> DictConfig:
    overrides = [f"paths.root_dir={state}", f"paths.output_dir={state}", f"paths.data_dir={ROOT / 'sample_data'}",
                 f"store.data_dir={state / 'pgdata'}", f"model={model}", f"generation.max_new_tokens={max_new_tokens}",
                 "retrieval.k=3", "serve.port=0", f"serve.max_batch_size={max_batch}",
                 "serve.request_timeout_s=900", "serve.max_pending=256"]
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


def over_http(url: str, questions: list[str], clients: int) -> tuple[list[float], float, int]:
    """Seconds per answered request, the wall clock of all, and how many were refused (429), with
    `clients` threads."""
    local = threading.local()
    refused = 0

    def ask(q: str) -> float | None:
        nonlocal refused
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=900)
        started = time.perf_counter()
        r = local.client.post(f"{url}/v1/chat/completions",
                              json={"model": "promptly", "messages": [{"role": "user", "content": q}]})
        if r.status_code == 429:
            refused += 1
            return None
        r.raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for t in pool.map(ask, questions) if t is not None]
    return latencies, time.perf_counter() - started, refused


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


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                     if line and not line.startswith("#"))}


def mean_between(before: dict[str, float], after: dict[str, float], name: str) -> float:
    """The mean of a histogram over the observations made between two scrapes."""
    count = after[f"{name}_count"] - before.get(f"{name}_count", 0.0)
    return (after[f"{name}_sum"] - before.get(f"{name}_sum", 0.0)) / count if count else 0.0


def start_server(cfg: DictConfig) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(build(cfg), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    while httpx.get(f"{url}/readyz").status_code != 200:
        time.sleep(0.1)
    return server, thread, url


def row(name: str, values: list[float], qps: float, extra: str = "") -> None:
    print(f"  {name:<22} p50={statistics.median(values) * 1000:8.1f} ms  p99={percentile(values, 99) * 1000:8.1f} ms"
          f"  {qps:6.3f} questions/s{extra}", flush=True)


def bench_model(args: argparse.Namespace, model: str, questions: list[str]) -> dict[str, float]:
    """One model: in-process baseline, API at each client count, streamed TTFT; the headline figures."""
    cfg = serve_config(args.state.resolve(), model, args.max_new_tokens, max(args.clients))
    on_compute_thread(ensure_corpus, cfg)
    answerer, store = on_compute_thread(in_process_answerer, cfg)
    server, thread, url = start_server(cfg)
    n = args.questions
    on_compute_thread(answerer.answer, questions[:2])  # warm-up
    over_http(url, questions[:2], 1)
    print(f"{model}: max_new_tokens={args.max_new_tokens}, serve.max_batch_size={max(args.clients)}, "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    # in-process and over HTTP alternate question by question: a shared machine's load hits both alike
    base, one = [], []
    for q in questions[:n]:
        base.append(timed(lambda q=q: on_compute_thread(answerer.answer, [q])))
        one.append(over_http(url, [q], 1)[0][0])
    base_qps = len(base) / sum(base)
    row("in-process, 1 at once", base, base_qps)
    row("API, 1 client", one, len(one) / sum(one))
    out = {"api_overhead_p50": statistics.median(one) / statistics.median(base) - 1}
    for clients in args.clients:
        if clients == 1:
            continue
        asked = (questions * (1 + max(n, clients) // len(questions)))[: max(n, clients)]
        before = scrape(url)
        latencies, wall, refused = over_http(url, asked, clients)
        after = scrape(url)
        gain = (len(latencies) / wall) / base_qps
        out[f"throughput_gain_{clients}"] = gain
        row(f"API, {clients} clients", latencies, len(latencies) / wall,
            f"  gain {gain:.2f}x  mean batch {mean_between(before, after, 'promptly_batch_size'):.2f} rows/step"
            f"  refused {refused}  load {os.getloadavg()[0]:.1f}")
    first = ttft(url, questions[: min(n, 8)])
    print(f"  TTFT (streamed, 1 client) p50={statistics.median(first) * 1000:.1f} ms "
          f"p99={percentile(first, 99) * 1000:.1f} ms", flush=True)
    out["ttft_p50_ms"] = statistics.median(first) * 1000
    server.should_exit = True
    thread.join(timeout=30)
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=ROOT / ".promptly" / "bench" / "serve")
    parser.add_argument("--models", default="tiny,smollm2_135m_instruct",
                        help="model options, comma-separated; the last one gives the last line")
    parser.add_argument("--clients", default="1,8,32", type=lambda v: [int(c) for c in v.split(",")])
    parser.add_argument("--questions", type=int, default=16, help="questions asked sequentially (and at least "
                        "this many per concurrent run)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    lines = (ROOT / "sample_data" / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines]
    figures: dict[str, float] = {}
    for model in args.models.split(","):
        figures = bench_model(args, model, questions)
    print(" ".join(f"{k}={v:.3f}" if "ttft" not in k else f"{k}={v:.1f}" for k, v in figures.items()
                   if k in ("api_overhead_p50", "throughput_gain_8", "ttft_p50_ms")))


if __name__ == "__main__":
    main()
