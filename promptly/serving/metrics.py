"""The server's Prometheus metrics, in a registry of its own (two apps in one process never collide).

What an operator asks of a RAG server: how many requests by route and status, where the time goes
(retrieval vs generation), how soon the first token comes, how many tokens, and whether batching
happens (the batch-size histogram counts rows per decode step: all 1s means requests never overlapped),
how many requests joined a batch already running, and the queue wait that admission predicts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class ServerMetrics:
    """The metric objects; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("promptly_requests", "HTTP requests by route and status code",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("promptly_request_seconds", "HTTP request latency (until the last byte "
                                         "for non-streamed answers, until the headers for streams)", ["route"],
                                         buckets=SECONDS, registry=r)
        self.retrieval_seconds = Histogram("promptly_retrieval_seconds", "Query embedding + store search per "
                                           "request", buckets=SECONDS, registry=r)
        self.generation_seconds = Histogram("promptly_generation_seconds", "From a prepared request's arrival "
                                            "in the queue to its last token", buckets=SECONDS, registry=r)
        self.queue_seconds = Histogram("promptly_queue_seconds", "Time a prepared request waited for its prefill",
                                       buckets=SECONDS, registry=r)
        self.prefill_seconds = Histogram("promptly_prefill_seconds", "One prefill of newcomers (joined to the "
                                         "running batch afterwards)", buckets=SECONDS, registry=r)
        self.step_seconds = Histogram("promptly_decode_step_seconds", "One decode step of the running batch",
                                      buckets=SECONDS, registry=r)
        self.ttft_seconds = Histogram("promptly_time_to_first_token_seconds", "From request arrival to the first "
                                      "generated token", buckets=SECONDS, registry=r)
        self.tokens = Counter("promptly_tokens_generated", "Answer tokens generated", registry=r)
        self.batch_size = Histogram("promptly_batch_size", "Sequences decoded together in one decode step",
                                    buckets=BATCH_SIZES, registry=r)
        self.running = Gauge("promptly_running_sequences", "Sequences in the running batch now", registry=r)
        self.queued = Gauge("promptly_queued_requests", "Prepared requests waiting for a row in the batch",
                            registry=r)
        self.joined_running = Counter("promptly_joined_running_batch", "Requests prefilled while other requests "
                                      "were mid-generation (continuous batching at work)", registry=r)
        self.queue_wait_estimate = Gauge("promptly_queue_wait_estimate_seconds", "The wait for a free row that "
                                         "admission predicted for the latest request", registry=r)
        self.pending = Gauge("promptly_pending_requests", "Requests admitted and not yet answered", registry=r)
        self.rejected = Counter("promptly_rejected_requests", "Requests refused or abandoned", ["reason"],
                                registry=r)
        self.conversations = Counter("promptly_conversations_stored", "Answered questions stored as conversations",
                                     registry=r)
        self.model_switches = Counter("promptly_model_switches", "Times a newly active model version was swapped "
                                      "in", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
