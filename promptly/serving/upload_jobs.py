"""Uploads as jobs: POST /v1/uploads queues a file and answers at once; a few worker threads ingest it.

Fairness: each owner has a FIFO queue, the owners are served in turn, and an owner has at most one job
running. So a user's large file holds at most one of the `serve.upload_workers` workers, and another
user's small file waits only while every worker is busy with *other* users' files (each bounded by
serve.upload_timeout_s). The workers share one embedder through a first-come lock taken per step of
serve.upload_batch_chunks chunks, so running jobs advance in alternating steps instead of racing for the CPU.

Each upload is ingested on its own, as one document (`cleanup=none`: nothing else is ever deleted),
redacted first when the `ingest` group says so (`ingest=upload`), with the ids and owner of
`ingest=upload`: `uploads/<owner>/<file>`, `metadata.owner`. A document is written in one transaction
after all its chunks are embedded, so a job cancelled or out of time (checked between steps) stores
nothing. The raw file is deleted when the job ends, whatever the outcome.

State lives in this process: one server replica (jobs queued when it stops are dropped, their raw
files deleted).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from promptly.errors import InputNotFoundError, PromptlyError
from promptly.ingest.documents import LoadFailure, SourceConfig, load_file
from promptly.ingest.redaction import RedactionReport, Redactor
from promptly.ingest.splits import SplitConfig
from promptly.ingest.sync import sync_documents
from promptly.serving.compute import on_compute_thread
from promptly.serving.config import ServeSettings, resolved_copy
from promptly.serving.engine import OverloadedError
from promptly.serving.uploads import ALLOWED, JOBS_FOLDER, checked_name, jobs_root, remove_raw, write_private
from promptly.store.open import opened_store

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
KEEP_FINISHED = 1000
"""Finished jobs remembered (for GET) before the oldest are forgotten."""


class TooManyUploadsError(OverloadedError):
    """More than serve.max_queued_uploads of one user's uploads queued or running (429)."""

    def __init__(self, message: str, retry_after_s: int = 10) -> None:
        PromptlyError.__init__(self, message)
        self.retry_after_s = retry_after_s


class _Stopped(Exception):
    """Not an error: how a job leaves the ingest between batches (cancelled, out of time or budget)."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class UploadJob:
    """One upload and what became of it; `to_json` is what GET /v1/uploads/{id} answers."""

    id: str
    owner: str
    filename: str
    document_id: str
    size_bytes: int
    folder: Path
    """The job's private folder holding the raw file; deleted when the job ends."""
    status: Status = "queued"
    stage: str | None = None
    """While running: reading, redacting, chunking, embedding or storing."""
    chunks_done: int = 0
    chunks_total: int | None = None
    reason: str | None = None
    result: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "upload", "owner": self.owner, "filename": self.filename,
                "document_id": self.document_id, "bytes": self.size_bytes, "status": self.status,
                "stage": self.stage, "chunks_done": self.chunks_done, "chunks_total": self.chunks_total,
                "reason": self.reason, "result": self.result, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at}


class FairQueue:
    """Per-owner FIFO queues served in turn, at most one running job per owner (not thread-safe: the
    caller holds a lock)."""

    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[UploadJob]] = OrderedDict()
        self._busy: set[str] = set()

    def push(self, job: UploadJob) -> None:
        self._queues.setdefault(job.owner, deque()).append(job)

    def pop(self) -> UploadJob | None:
        """The next owner's oldest job, that owner now busy and last in turn; None if none may start."""
        for owner, queue in self._queues.items():
            if owner not in self._busy:
                job = queue.popleft()
                del self._queues[owner]
                if queue:
                    self._queues[owner] = queue  # back of the turn order
                self._busy.add(owner)
                return job
        return None

    def finished(self, owner: str) -> None:
        self._busy.discard(owner)

    def remove(self, job: UploadJob) -> bool:
        queue = self._queues.get(job.owner)
        if queue is None or job not in queue:
            return False
        queue.remove(job)
        if not queue:
            del self._queues[job.owner]
        return True

    def drain(self) -> list[UploadJob]:
        jobs = [job for queue in self._queues.values() for job in queue]
        self._queues.clear()
        return jobs


class FifoLock:
    """A lock handed to waiters in arrival order (threading.Lock lets a releasing thread take it again)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder: the lock is now ours

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


def upload_redactor(cfg: DictConfig) -> Redactor:
    """One Redactor with the `ingest.redact` settings (on, whatever `enabled` says): conversations and
    uploads share it, so the recognizers load once."""
    given = OmegaConf.to_container(cfg.ingest.redact, resolve=True) if cfg.get("ingest", {}).get("redact") else {}
    assert isinstance(given, dict)
    settings = {str(k): v for k, v in given.items() if k not in ("_target_", "enabled")}
    return Redactor(enabled=True, **settings)


class UploadJobs:
    """The queue, the workers and the jobs of one server."""

    def __init__(self, cfg: DictConfig, settings: ServeSettings, redactor: Redactor | None = None) -> None:
        self.cfg, self.settings = resolved_copy(cfg), settings
        self.root = Path(settings.uploads_dir).expanduser()
        redact = self.cfg.ingest.get("redact")
        self.redactor = (redactor or upload_redactor(self.cfg)) if redact and redact.get("enabled") else None
        self._queue = FairQueue()
        self._jobs: OrderedDict[str, UploadJob] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self._workers: list[threading.Thread] = []
        self._embedder: Any = None
        self._embedder_lock = threading.Lock()
        self._embedding = FifoLock()

    # -- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        remove_raw(self.root / JOBS_FOLDER)  # left by a process that stopped abruptly: nobody will ingest them
        jobs_root(self.root)
        self._workers = [threading.Thread(target=self._work, name=f"promptly-upload-{i}", daemon=True)
                         for i in range(self.settings.upload_workers)]
        for worker in self._workers:
            worker.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel everything; running jobs stop at their next batch; every raw file is deleted."""
        with self._cond:
            self._stopping = True
            dropped = self._queue.drain()
            for job in self._jobs.values():
                job.cancel.set()
            self._cond.notify_all()
        for job in dropped:
            self._finish(job, "cancelled", "the server stopped")
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        remove_raw(self.root / JOBS_FOLDER)

    # -- requests ------------------------------------------------------------------------------------------
    def submit(self, owner: str, filename: str, data: bytes) -> UploadJob:
        """Check the file, write it privately and queue it: the answer to POST /v1/uploads."""
        name = checked_name(filename, data, self.settings.max_upload_bytes)
        job_id = uuid.uuid4().hex
        with self._cond:
            active = sum(1 for j in self._jobs.values() if j.owner == owner and j.status not in FINISHED)
            if active >= self.settings.max_queued_uploads:
                raise TooManyUploadsError(f"{active} of your uploads are queued or running (serve."
                                          f"max_queued_uploads={self.settings.max_queued_uploads}): wait for one "
                                          "to finish or cancel one")
            if self._stopping:
                raise PromptlyError("the server is stopping")
        folder = jobs_root(self.root) / job_id
        write_private(folder, name, data)
        job = UploadJob(id=job_id, owner=owner, filename=name, document_id=f"uploads/{owner}/{name}",
                        size_bytes=len(data), folder=folder)
        with self._cond:
            self._jobs[job_id] = job
            self._forget_old()
            self._queue.push(job)
            self._cond.notify()
        return job

    def get(self, job_id: str, owner: str | None) -> UploadJob:
        """The job, for its owner only: anyone else is told it does not exist."""
        job = self._jobs.get(job_id)
        if job is None or owner is None or job.owner != owner:
            raise InputNotFoundError(f"no upload {job_id}")
        return job

    def owned_by(self, owner: str) -> list[UploadJob]:
        """The owner's jobs, newest first."""
        with self._cond:
            return [job for job in reversed(self._jobs.values()) if job.owner == owner]

    def cancel(self, job_id: str, owner: str | None) -> UploadJob:
        """Cancel a queued job at once, a running one at its next batch; a finished job stays as it is."""
        job = self.get(job_id, owner)
        with self._cond:
            queued = self._queue.remove(job)
            job.cancel.set()
        if queued:
            self._finish(job, "cancelled", "cancelled by its owner")
        return job

    # -- the workers ---------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._queue.pop()
                while job is None and not self._stopping:
                    self._cond.wait()
                    job = self._queue.pop()
                if job is None:
                    return
                job.status, job.started_at = "running", time.time()
            try:
                self._run(job)
            except _Stopped as stop:
                self._finish(job, stop.status, stop.reason)
            except Exception as err:  # a job never takes its worker down
                log.exception("upload %s failed", job.id)
                self._finish(job, "failed", f"{type(err).__name__}: {err}")
            finally:
                with self._cond:
                    self._queue.finished(job.owner)
                    self._cond.notify_all()

    def _run(self, job: UploadJob) -> None:
        deadline = time.monotonic() + self.settings.upload_timeout_s
        cfg = self.cfg

        def check() -> None:
            if job.cancel.is_set():
                raise _Stopped("cancelled", "cancelled by its owner" if not self._stopping else "the server stopped")
            if time.monotonic() > deadline:
                total = f" of {job.chunks_total}" if job.chunks_total is not None else ""
                raise _Stopped("failed", f"took longer than serve.upload_timeout_s={self.settings.upload_timeout_s:g}"
                                         f" s (stopped after {job.chunks_done}{total} chunks): nothing was stored")

        embedder = self._shared_embedder()
        chunker = instantiate(cfg.ingest.chunker)
        fingerprint = (f"{chunker.fingerprint()};embedder={embedder.model_name};"
                       f"doc_prefix={embedder.document_prefix}")  # as `promptly ingest` computes it
        source = SourceConfig(path=str(job.folder), name=f"uploads/{job.owner}", id_prefix=f"uploads/{job.owner}/",
                              suffixes=list(ALLOWED), max_bytes=self.settings.max_upload_bytes, owner=job.owner)
        job.stage = "reading"
        items = list(load_file(job.folder / job.filename, job.folder, source, fingerprint))
        redaction = RedactionReport() if self.redactor is not None else None
        if self.redactor is not None and redaction is not None:
            check()
            job.stage = "redacting"
            items = list(self.redactor.redact_documents(items, fingerprint, redaction))
        failures = [item for item in items if isinstance(item, LoadFailure)]
        if failures:
            raise _Stopped("failed", f"could not be read: {failures[0].reason}")
        check()
        job.stage = "chunking"
        split = SplitConfig(**OmegaConf.to_container(cfg.ingest.qa.split, resolve=True))  # type: ignore[arg-type]
        metered = _MeteredEmbedder(embedder, self._embedding, job, check, self.settings.upload_batch_chunks,
                                   self.settings.max_upload_chunks)
        with opened_store(cfg.store) as store:
            report = sync_documents(items, store, chunker, metered, cleanup="none",  # type: ignore[arg-type]
                                    source_name=source.name, embed_batch_chunks=self.settings.max_upload_chunks,
                                    split=split)
        if report.failed:
            raise _Stopped("failed", report.failed[0].reason)
        job.result = {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
                      "chunks_written": report.chunks_written,
                      "redacted": dict(redaction.counts) if redaction is not None else None,
                      "person_names": redaction.person_detection if redaction is not None else None}
        self._finish(job, "done", None)

    def _finish(self, job: UploadJob, status: Status, reason: str | None) -> None:
        remove_raw(job.folder)  # before the status changes: a client that sees the end sees no raw file
        job.status, job.reason, job.stage, job.finished_at = status, reason, None, time.time()
        if status != "done":
            log.info("upload %s (%s, %s): %s: %s", job.id, job.owner, job.filename, status, reason)

    def _shared_embedder(self) -> Any:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = on_compute_thread(instantiate, self.cfg.embedder)
            return self._embedder

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.status in FINISHED]
        for job_id in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]


class _MeteredEmbedder:
    """The embedder as the ingest sees it, embedding an upload's chunks a batch at a time: progress after
    each batch, and the job's cancel flag and time budget checked before each (the document is written
    only after the last batch, so stopping here stores nothing)."""

    def __init__(self, embedder: Any, turn: FifoLock, job: UploadJob, check: Callable[[], None], step: int,
                 max_chunks: int) -> None:
        self.embedder, self.turn, self.job, self.check = embedder, turn, job, check
        self.step, self.max_chunks = step, max_chunks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        job = self.job
        if not texts:  # the ingest's final flush when its batch is already written
            return np.asarray(on_compute_thread(self.embedder.embed_documents, []))
        if len(texts) > self.max_chunks:
            raise _Stopped("failed", f"the file splits into {len(texts)} chunks, more than serve.max_upload_chunks="
                                     f"{self.max_chunks}: nothing was stored")
        job.stage, job.chunks_total, job.chunks_done = "embedding", len(texts), 0
        parts = []
        for start in range(0, len(texts), self.step):
            self.check()
            with self.turn:
                parts.append(on_compute_thread(self.embedder.embed_documents, texts[start:start + self.step]))
            job.chunks_done += len(parts[-1])
        self.check()
        job.stage = "storing"
        return np.concatenate(parts)
