"""Synthetic QA pairs: sample chunks by document, ask a generator, validate, store with chunk ids and splits.

Chunks are sampled per document (up to a cap, seeded per document), so every document is represented
and adding a document changes no other document's sample. Sampled chunks that already have pairs are
skipped unless `regenerate` is set. With it, a chunk's earlier generated pairs are replaced by the new
ones once at least one new pair passed validation (a chunk whose new pairs were all rejected keeps its
old ones), the new pairs written before the old are deleted, so a crash in between loses nothing.
Pairs from the QA file are never replaced or deleted here: a generated question that repeats one of
them counts as a duplicate.

Two modes (`qa.mode`): full_pair asks the generator for whole pairs in JSON and checks that each answer
is grounded in its chunk (promptly/qa/validation.py), for strong models behind an endpoint;
answer_first picks answer spans from the chunk and asks only for their questions, then keeps the pairs
that pass the round trip (promptly/qa/answer_first.py), which a small local model can do.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from promptly.evaluation.rag_metrics import TextEncoder
from promptly.ingest.qa import split_for_document
from promptly.qa.answer_first import RoundTrip, validate_questions
from promptly.qa.config import GenerationConfig
from promptly.qa.generators import GeneratorError, QAGenerator
from promptly.qa.spans import AnswerSpan, select_spans
from promptly.qa.validation import REASONS, PairValidator, normalize_question, parse_reply
from promptly.records import Chunk, QAPair, Split, sha256_hex
from promptly.store.base import ChunkStore
from promptly.utils.concurrency import in_order

log = logging.getLogger(__name__)
Request = tuple[Chunk, AnswerSpan | None]
"""A chunk and the answer span asked about (None: full_pair, the generator writes whole pairs); in
answer_first, a span whose question was rejected is asked again with the next retry prompt."""


@dataclass
class GenerationReport:
    """What one run did; printed as the summary table."""

    mode: str = "full_pair"
    """answer_first or full_pair (`auto` resolved)."""
    documents: int = 0
    chunks_sampled: int = 0
    chunks_skipped: int = 0
    chunks_without_spans: int = 0
    """answer_first: sampled chunks with no answer-bearing span (nothing asked)."""
    requests: int = 0
    retries: int = 0
    """answer_first: of the requests, those asking again (a retry prompt) for a span whose question failed."""
    accepted: int = 0
    stored: int = 0
    replaced: int = 0
    """Earlier generated pairs deleted because their chunk got new ones (regenerate)."""
    rejected: Counter[str] = field(default_factory=lambda: Counter({r: 0 for r in REASONS}))
    accepted_pairs: list[QAPair] = field(default_factory=list)
    """The accepted pairs in the order they were judged (the summary shows a few)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.requests == 0 or self.rejected["generator_error"] < self.requests


def chunk_heading(chunk: Chunk) -> str:
    """What the prompt says about where a chunk is: title, section path and document id."""
    path = chunk.metadata.get("heading_path") or []
    section = " > ".join(path) if isinstance(path, list) else str(path)
    doc = chunk.document_id.replace("/", " ").replace("_", " ").replace("-", " ")
    return "\n".join(x for x in (str(chunk.metadata.get("title") or ""), section, doc) if x)


def request_seed(seed: int, chunk_id: str) -> int:
    """A 31-bit seed per (run seed, chunk): independent of which other chunks are asked."""
    return int(sha256_hex(f"{seed}:{chunk_id}")[:8], 16) & 0x7FFFFFFF


def sample_chunks(store: ChunkStore, cfg: GenerationConfig, skip: set[str]) -> tuple[list[Chunk], int, int]:
    """Up to `per_document` chunks of every document, minus those in `skip`; also (documents, skipped).

    The sample is drawn before skipping, so the same settings always name the same chunks: a re-run asks
    only those whose pairs were all rejected, and more coverage is asked for with a larger
    `per_document` (or another seed), never by running again.
    """
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in store.iter_chunks():  # read completely before any other query on the connection
        by_doc.setdefault(chunk.document_id, []).append(chunk)
    chosen: list[Chunk] = []
    skipped = 0
    for doc_id, chunks in by_doc.items():
        long_enough = [c for c in chunks if c.token_count >= cfg.min_chunk_tokens] or chunks
        rng = random.Random(f"{cfg.seed}:{doc_id}")
        picked = rng.sample(long_enough, min(cfg.per_document, len(long_enough)))
        fresh = [c for c in picked if c.id not in skip]
        skipped += len(picked) - len(fresh)
        chosen.extend(sorted(fresh, key=lambda c: c.ordinal))
    return chosen, len(by_doc), skipped


def resolve_mode(mode: str, generator: QAGenerator) -> str:
    """`auto`: what the generator suits (its `default_mode`; answer_first when it names none)."""
    return str(getattr(generator, "default_mode", "answer_first")) if mode == "auto" else mode


def plan_requests(chunks: Sequence[Chunk], mode: str, cfg: GenerationConfig) -> list[Request]:
    """One request per chunk (full_pair), or one per answer span, `pairs_per_chunk` spans a chunk."""
    if mode == "full_pair":
        return [(chunk, None) for chunk in chunks]
    af = cfg.answer_first
    return [(chunk, span) for chunk in chunks
            for span in select_spans(chunk.content, cfg.pairs_per_chunk, af.min_span_words, af.max_span_words)]


def generate_pairs(
    store: ChunkStore,
    encoder: TextEncoder,
    generator: QAGenerator,
    cfg: GenerationConfig | None = None,
    on_progress: Callable[[Chunk], None] | None = None,
) -> GenerationReport:
    """Generate, validate and store pairs for the sampled chunks; return the counts."""
    cfg = cfg or GenerationConfig()
    started = time.perf_counter()
    report = GenerationReport(mode=resolve_mode(cfg.mode, generator))
    validator = PairValidator(encoder, cfg.validation)
    round_trip = RoundTrip(store, encoder, cfg.answer_first) if report.mode == "answer_first" else None
    stored_splits = store.document_splits()
    existing = list(store.iter_qa_pairs())
    with_pairs = set() if cfg.regenerate else {c for p in existing for c in p.chunk_ids}
    chunks, report.documents, report.chunks_skipped = sample_chunks(store, cfg, with_pairs)
    report.chunks_sampled = len(chunks)
    requests = plan_requests(chunks, report.mode, cfg)
    report.chunks_without_spans = len({c.id for c in chunks} - {c.id for c, _ in requests})
    asked = {c.id for c in chunks}
    replaceable: dict[str, list[str]] = {}  # chunk id -> ids of its earlier generated pairs
    for pair in existing:
        if cfg.regenerate and pair.origin == "generated" and pair.chunk_ids and pair.chunk_ids[0] in asked:
            replaceable.setdefault(pair.chunk_ids[0], []).append(pair.id)
        else:  # questions being replaced may come back; any other stored question is a duplicate
            validator.remember(pair.document_id, pair.question)
    failures_in_a_row = 0
    prompts = [cfg.answer_first.prompt, *cfg.answer_first.retry_prompts]

    def ask(request: Request, attempt: int) -> str | GeneratorError:
        chunk, span = request
        try:
            if span is None:
                return generator.generate(cfg.prompt.messages(chunk, cfg.pairs_per_chunk),
                                          request_seed(cfg.seed, chunk.id))
            messages = prompts[attempt].messages(chunk, span.text, span.section, span.header)
            key = f"{chunk.id}:{span.text}" + (f":{attempt}" if attempt else "")
            return generator.generate(messages, request_seed(cfg.seed, key))
        except GeneratorError as err:
            return err

    def finish(chunk: Chunk, replies: list[tuple[AnswerSpan | None, str]]) -> list[Request]:
        """Validate and store one chunk's replies; the requests worth asking again (answer_first)."""
        split = stored_splits.get(chunk.document_id) or split_for_document(chunk.document_id, cfg.split)
        retry: list[AnswerSpan] = []
        if round_trip is None:
            pairs = [p for _, reply in replies for p in _validate(reply, chunk, split, cfg, validator, report)]
        else:
            pairs, retry = validate_questions([(s, r) for s, r in replies if s is not None], chunk, split,
                                              cfg.answer_first, validator, round_trip, report.rejected)
        report.accepted += len(pairs)
        report.accepted_pairs.extend(pairs)
        report.stored += store.upsert_qa_pairs(pairs)
        if pairs and chunk.id in replaceable:
            fresh = {p.id for p in pairs}
            report.replaced += store.delete_qa_pairs([i for i in replaceable.pop(chunk.id) if i not in fresh])
        if on_progress:
            on_progress(chunk)
        return [(chunk, span) for span in retry]

    def ask_all(requests: list[Request], attempt: int) -> list[Request]:
        """One pass: every request asked (overlapping up to the generator's concurrency), the replies
        validated and stored chunk by chunk in order, so the verdicts (duplicates above all) are those
        of a one-at-a-time run. Returns the requests to ask again with the next prompt."""
        nonlocal failures_in_a_row
        again: list[Request] = []
        current: Chunk | None = None
        replies: list[tuple[AnswerSpan | None, str]] = []
        asked_in_order = in_order(lambda r: ask(r, attempt), requests, getattr(generator, "concurrency", 1))
        for (chunk, span), reply in zip(requests, asked_in_order, strict=True):
            if current is not None and chunk.id != current.id:
                again += finish(current, replies)
                replies = []
            current = chunk
            report.requests += 1
            report.retries += attempt > 0
            if isinstance(reply, GeneratorError):
                log.warning("generator failed on a chunk of %s: %s", chunk.document_id, reply)
                report.rejected["generator_error"] += 1
                failures_in_a_row += 1
                if failures_in_a_row >= cfg.max_consecutive_errors:
                    raise GeneratorError(f"{failures_in_a_row} requests in a row failed, the last with: {reply}")
                continue
            failures_in_a_row = 0
            replies.append((span, reply))
        if current is not None:
            again += finish(current, replies)
        return again

    pending, attempt = requests, 0
    while pending:
        retry = ask_all(pending, attempt)
        attempt += 1
        pending = retry if attempt < len(prompts) else []
    report.seconds = time.perf_counter() - started
    return report


def _validate(reply: str, chunk: Chunk, split: Split, cfg: GenerationConfig, validator: PairValidator,
              report: GenerationReport) -> list[QAPair]:
    parsed = parse_reply(reply)
    report.rejected["malformed"] += parsed.malformed
    candidates = parsed.pairs[: cfg.pairs_per_chunk]
    report.rejected["surplus"] += len(parsed.pairs) - len(candidates)
    kept, asked = [], set()
    for cand in candidates:
        key = normalize_question(cand.question)
        if validator.is_empty(cand):
            report.rejected["empty"] += 1
        elif key in asked or validator.is_duplicate(chunk.document_id, cand.question):
            report.rejected["duplicate"] += 1
        else:
            asked.add(key)
            kept.append(cand)
    out = []
    verdicts = validator.grounding([c.answer for c in kept], chunk.content, chunk_heading(chunk))
    for cand, grounding in zip(kept, verdicts, strict=True):
        if not grounding.grounded:
            report.rejected["ungrounded"] += 1
            continue
        validator.remember(chunk.document_id, cand.question)
        out.append(QAPair(question=cand.question, answer=cand.answer, document_id=chunk.document_id,
                          split=split, chunk_ids=(chunk.id,), origin="generated").with_id())
    return out
