"""RagDataModule: a ChunkStore's QA pairs (or chunks) as token batches for causal-LM fine-tuning.

prepare_data (rank 0) streams the store, retrieves context, tokenizes and writes token files;
setup (every rank) memory-maps them; the dataloaders batch them as configured (batching.py) and
are resumable mid-epoch. Splits are the store's (fixed per document at ingest), never re-drawn here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from promptly.data.batching import EpochBatchSampler, ResumableDataLoader, RowDataset, resolve_batching
from promptly.data.collate import Collator
from promptly.data.config import Batching, ExampleSource, RetrievalConfig, RetrievalMode, SplitLimits, Task
from promptly.data.conversations import ConversationReport, conversation_examples
from promptly.data.encoding import EncodeStats, ExampleEncoder
from promptly.data.prompts import PromptBuilder, prompt_config
from promptly.data.sources import check_store, document_splits, iter_chunk_texts, read_spool, spool_qa_pairs
from promptly.data.token_cache import TokenFile, TokenFileWriter
from promptly.records import Split
from promptly.retrieval import RagExample, Retriever, iter_rag_examples
from promptly.store.base import ChunkStore, StoreError

log = logging.getLogger(__name__)

SPLITS: tuple[Split, ...] = ("train", "validation", "test")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Sample:
    """A held-out question for greedy generation at validation end."""

    question: str
    answer: str
    prompt_ids: list[int]


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _retrieval(value: Any) -> RetrievalConfig:
    if isinstance(value, RetrievalConfig):
        return value
    fields = dict(_plain(value) or {})
    if "mode" in fields:
        fields["mode"] = RetrievalMode(fields["mode"])
    return RetrievalConfig(**fields)


class RagDataModule(L.LightningDataModule):
    """See the module docstring; every argument is documented in promptly/data/config.py."""

    def __init__(
        self,
        store: ChunkStore,
        tokenizer: Any,
        embedder: Any = None,
        task: Task | str = Task.rag_qa,
        sources: Sequence[ExampleSource | str] = (ExampleSource.qa_pairs,),
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        max_length: int | None = 1024,
        batching: Batching | str = Batching.auto,
        pad_to_multiple_of: int | None = None,
        seed: int = 42,
        num_workers: int = 0,
        validation_split: str = "validation",
        cache_dir: str | None = None,
        limit: SplitLimits | Mapping[str, int | None] | None = None,
        retrieval: RetrievalConfig | Mapping[str, Any] | None = None,
        prompt: Any = None,
        context_length: int | None = None,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        self.store, self.tokenizer, self.embedder = store, tokenizer, embedder
        self.task = Task(task)
        self.sources = tuple(dict.fromkeys(ExampleSource(s) for s in _plain(sources)))
        if not self.sources:
            raise ValueError("data.sources is empty: list qa_pairs, conversations or both")
        if self.task == Task.causal_lm and ExampleSource.conversations in self.sources:
            raise ValueError("data.sources=[conversations] needs task=rag_qa (causal_lm trains on chunk text)")
        if self.task == Task.rag_qa and ExampleSource.qa_pairs in self.sources and embedder is None:
            raise ValueError("data.sources=[qa_pairs] retrieves context for each question and needs the store's "
                             "embedder (embedder=...)")
        limits = [m for m in (max_length, context_length) if m]
        if not limits:
            raise ValueError("set data.max_length (the model's context length is unknown)")
        self.max_length = min(limits)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.batching = resolve_batching(batching, attn_implementation)
        self.pad_to_multiple_of, self.seed, self.num_workers = pad_to_multiple_of, seed, num_workers
        if validation_split not in SPLITS:
            raise ValueError(f"data.validation_split must be one of {SPLITS}, got {validation_split!r}")
        self.validation_split: Split = validation_split
        self.limit = limit if isinstance(limit, SplitLimits) else SplitLimits(**(_plain(limit) or {}))
        self.retrieval = _retrieval(retrieval)
        self.prompt = prompt_config(_plain(prompt))
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="promptly-data-"))
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token (ModelFactory.load_tokenizer sets one)")
        self.builder = PromptBuilder(self.prompt, tokenizer) if self.task == Task.rag_qa else None
        self.encoder = ExampleEncoder(tokenizer, self.builder, self.max_length)
        self.files: dict[str, TokenFile] = {}
        self.stats: dict[str, dict[str, int]] = {}

    # -- prepare: store -> token files --------------------------------------------------------------
    def fingerprint(self) -> str:
        """Everything the token files depend on, except the store's contents."""
        vocab = hashlib.sha256(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode()).hexdigest()
        spec = {"v": CACHE_VERSION, "task": self.task.value, "sources": [s.value for s in self.sources],
                "max_length": self.max_length, "vocab": vocab,
                "chat": getattr(self.tokenizer, "chat_template", None), "limit": asdict(self.limit),
                "retrieval": {k: str(v) for k, v in asdict(self.retrieval).items()},
                "prompt": {k: str(v) for k, v in asdict(self.prompt).items()},
                "validation_split": self.validation_split, "seed": self.seed}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def manifest_path(self) -> Path:
        return self.cache_dir / "manifest.json"

    def prepare_data(self) -> None:
        if self.manifest_path.is_file():
            manifest = json.loads(self.manifest_path.read_text())
            if manifest.get("fingerprint") == self.fingerprint():
                return
        try:
            rag = self.task == Task.rag_qa
            check_store(self.store, needs_qa=rag and ExampleSource.qa_pairs in self.sources)
            stats = self._prepare_rag() if rag else self._prepare_causal()
        finally:
            self.store.close()
        tmp = self.manifest_path.with_name(f".manifest.{os.getpid()}.json")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint(), "stats": stats}, indent=2))
        tmp.replace(self.manifest_path)  # written last: its presence means every split is complete
        for split, s in stats.items():
            if s["context_truncated"] or s["dropped"]:
                log.warning("%s: %d of %d examples lost context tokens to fit max_length=%d (%d tokens in all); "
                            "%d dropped because their answer alone does not fit", split, s["context_truncated"],
                            s["examples"] + s["dropped"], self.max_length, s["context_tokens_cut"], s["dropped"])

    def _splits_to_write(self) -> list[Split]:
        return list(dict.fromkeys(["train", self.validation_split, "test"]))

    def _limit(self, split: Split) -> int | None:
        return getattr(self.limit, split)

    def _prepare_rag(self) -> dict[str, dict[str, int]]:
        assert self.builder is not None
        liked = self._conversations() if ExampleSource.conversations in self.sources else {}
        stats: dict[str, dict[str, int]] = {}
        seen: dict[str, str] = {}
        spool_dir = self.cache_dir / "spool"
        for split in self._splits_to_write():
            qa = self._qa_examples(split, spool_dir, seen) if ExampleSource.qa_pairs in self.sources else ()
            examples = islice(chain(qa, liked.get(split, ())), self._limit(split))
            writer, st = TokenFileWriter(self.cache_dir, split), EncodeStats()
            samples: list[dict[str, Any]] = []
            for ex in examples:
                enc = self.encoder.encode_qa(ex.pair.question, self.builder.format_context(ex.chunks),
                                             ex.pair.answer)
                if enc is None:
                    st.dropped += 1
                    continue
                writer.add(enc.input_ids, enc.prompt_len)
                st.add(enc)
                if len(samples) < 32:
                    samples.append({"question": ex.pair.question, "answer": ex.pair.answer,
                                    "prompt_len": enc.prompt_len, "index": len(writer) - 1})
            writer.close()
            (self.cache_dir / f"{split}.samples.json").write_text(json.dumps(samples))
            stats[split] = st.as_dict()
        shutil.rmtree(spool_dir, ignore_errors=True)
        return stats

    def _qa_examples(self, split: Split, spool_dir: Path, seen: dict[str, str]) -> Iterator[RagExample]:
        """The split's QA pairs with retrieved context (a document's pairs must all be in one split)."""
        spool = spool_qa_pairs(self.store, split, spool_dir)
        training = split == "train"
        gold = self.retrieval.include_gold if training else self.retrieval.include_gold_eval
        try:
            retriever = Retriever(self.store, self.embedder, self.retrieval.k, self.retrieval.mode.value,
                                  self.retrieval.batch_size)
            for ex in iter_rag_examples(retriever, read_spool(spool, self._limit(split)), gold):
                doc = ex.pair.document_id
                if seen.setdefault(doc, split) != split:
                    raise StoreError(f"document {doc!r} has QA pairs in both {seen[doc]} and {split}: "
                                     "re-run `promptly ingest` to re-split by document")
                yield ex
        finally:
            spool.unlink(missing_ok=True)

    def _conversations(self) -> dict[str, list[RagExample]]:
        """Liked conversations by split, their cited chunks as context (read once, before any QA pair)."""
        report = ConversationReport()
        by_split: dict[str, list[RagExample]] = {}
        for ex in conversation_examples(self.store, self.seed, report=report):
            by_split.setdefault(ex.pair.split, []).append(ex)
        if not by_split:
            why = (f"{report.liked} are liked but none of the chunks they cite is stored any more"
                   if report.liked else "none is liked yet")
            raise StoreError(f"data.sources includes conversations but {why}: `promptly serve` records "
                             "conversations and their feedback (or train with data=rag_qa)")
        log.info("conversations: %d liked; examples %s; %d left out (no cited chunk stored)", report.liked,
                 ", ".join(f"{k} {v}" for k, v in report.examples.items()), report.without_chunks)
        return by_split

    def _prepare_causal(self) -> dict[str, dict[str, int]]:
        split_of = document_splits(self.store, self.seed)
        wanted = self._splits_to_write()
        writers = {s: TokenFileWriter(self.cache_dir, s) for s in wanted}
        stats = {s: EncodeStats() for s in wanted}
        for doc, text in iter_chunk_texts(self.store):
            split = split_of(doc)
            if split not in writers:
                continue
            limit = self._limit(split)
            for enc in self.encoder.encode_text(text):
                if limit is not None and len(writers[split]) >= limit:
                    break
                writers[split].add(enc.input_ids, enc.prompt_len)
                stats[split].add(enc)
        for split, w in writers.items():
            w.close()
            (self.cache_dir / f"{split}.samples.json").write_text("[]")
        return {s: st.as_dict() for s, st in stats.items()}

    # -- setup and loaders --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if not self.manifest_path.is_file():
            raise RuntimeError(f"no prepared data in {self.cache_dir}: prepare_data() must run first")
        self.stats = json.loads(self.manifest_path.read_text())["stats"]
        by_stage: dict[str, list[str]] = {"fit": ["train", self.validation_split],
                                          "validate": [self.validation_split], "test": ["test"]}
        needed = by_stage.get(stage or "fit", list(SPLITS))
        for split in dict.fromkeys(needed):
            if split not in self.files:
                self.files[split] = TokenFile.open(self.cache_dir, split)
            if len(self.files[split]) == 0:
                hint = ("the store assigns no document to it; lower ingest.qa.split ratios or set "
                        "data.validation_split=train") if split != "train" else "no training examples"
                raise StoreError(f"the {split} split is empty: {hint}")

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, split: str, shuffle: bool) -> ResumableDataLoader:
        file = self.files[split]
        rank, world = self._rank()
        sampler = EpochBatchSampler(file.lengths, self.batching, self.batch_size if shuffle else
                                    self.eval_batch_size, self.max_length, shuffle, self.seed, rank, world)
        collate = Collator(int(self.tokenizer.pad_token_id), packed=self.batching == Batching.packed,
                           pad_to_multiple_of=self.pad_to_multiple_of)
        return ResumableDataLoader(RowDataset(file), sampler, collate, self.num_workers)

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.validation_split, shuffle=False)

    def test_dataloader(self) -> ResumableDataLoader:
        return self._loader("test", shuffle=False)

    # -- for the module and the benchmarks ----------------------------------------------------------
    def samples(self, n: int, split: str | None = None) -> list[Sample]:
        """The first n examples of a split with their prompts, for greedy answers at validation end."""
        split = split or self.validation_split
        path = self.cache_dir / f"{split}.samples.json"
        if n <= 0 or not path.is_file() or split not in self.files:
            return []
        out = []
        for row in json.loads(path.read_text())[:n]:
            ids, _ = self.files[split][row["index"]]
            out.append(Sample(row["question"], row["answer"], [int(t) for t in ids[: row["prompt_len"]]]))
        return out

    def train_batches_per_epoch(self) -> int:
        """Batches of one training epoch on this rank (known without building a dataloader)."""
        return len(self.train_dataloader().batch_sampler)
