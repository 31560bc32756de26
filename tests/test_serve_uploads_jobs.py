"""Upload jobs without HTTP (the API routes are in test_serve_uploads.py): owners take turns and one
user's large file does not delay another's small one; progress, cancelling, the time and chunk budgets
(each stores nothing); the raw file private while queued and gone once the job ends."""

from __future__ import annotations

import random
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from promptly.serving.upload_jobs import FINISHED, FairQueue, TooManyUploadsError, UploadJob, UploadJobs
from promptly.store.postgres import PostgresStore
from promptly.verbs.serve import settings_of

from .conftest import DIM
from .serve_fixtures import serve_cfg, serve_db  # noqa: F401  (a fixture)

WORDS = ["heron", "cluster", "certificate", "rotation", "broker", "queue", "retry", "offset", "replica", "partition",
         "consumer", "lag", "window", "snapshot", "ledger", "archive", "quota", "tenant", "shard", "index", "vacuum"]


def text_of(paragraphs: int, seed: int = 0) -> bytes:
    """Plain prose of about 2 chunks per 3 paragraphs under the default chunker (200 tokens)."""
    rng = random.Random(seed)
    body = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(90)) + "." for _ in range(paragraphs))
    return f"# Notes {seed}\n\n{body}\n".encode()


LARGE = text_of(60)  # about 40 chunks: five steps of 8
SMALL = b"# Small\n\nThe heron cluster rotates its certificates every 41 days.\n"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory, serve_db: str):  # type: ignore[no-untyped-def]  # noqa: F811
    return serve_cfg(tmp_path_factory.mktemp("upload-jobs"), serve_db, "serve.upload_batch_chunks=8",
                     "serve.upload_workers=2", "serve.max_upload_chunks=60")


@pytest.fixture(scope="module")
def jobs(cfg) -> Iterator[UploadJobs]:  # type: ignore[no-untyped-def]
    uploads = UploadJobs(cfg, settings_of(cfg))
    uploads.start()
    yield uploads
    uploads.stop()


def wait(job: UploadJob, timeout_s: float = 300) -> UploadJob:
    deadline = time.monotonic() + timeout_s
    while job.status not in FINISHED:
        assert time.monotonic() < deadline, f"upload {job.filename} still {job.status}"
        time.sleep(0.05)
    return job


def stored(url: str, document_id: str) -> int:
    with PostgresStore(url, embedding_dim=DIM) as store:
        return len(list(store.iter_chunks([document_id])))


def test_owners_take_turns_and_each_runs_one_job_at_a_time(tmp_path: Path) -> None:
    def job(owner: str, n: int) -> UploadJob:
        return UploadJob(id=f"{owner}{n}", owner=owner, filename=f"{n}.md", document_id="", size_bytes=1,
                         folder=tmp_path)

    queue = FairQueue()
    for j in (job("alice", 1), job("alice", 2), job("alice", 3), job("bob", 1), job("carol", 1)):
        queue.push(j)
    first, second, third = queue.pop(), queue.pop(), queue.pop()
    assert [j.id for j in (first, second, third) if j] == ["alice1", "bob1", "carol1"]
    assert queue.pop() is None  # alice's next waits until her running job ends
    queue.finished("bob")
    assert queue.pop() is None  # bob has nothing queued
    queue.finished("alice")
    nxt = queue.pop()
    assert nxt is not None and nxt.id == "alice2"


def test_a_small_upload_is_not_delayed_by_another_users_large_one(jobs: UploadJobs, serve_db: str) -> None:  # noqa: F811
    large = jobs.submit("alice", "large.md", LARGE)
    second = jobs.submit("alice", "second.md", SMALL)  # alice's own next file waits for her first
    small = jobs.submit("bob", "small.md", SMALL)
    for job in (small, large, second):
        wait(job)
    assert [large.status, second.status, small.status] == ["done", "done", "done"], large.reason
    assert large.chunks_total is not None and large.chunks_total >= 24
    assert small.finished_at is not None and large.finished_at is not None and second.started_at is not None
    assert small.finished_at < large.finished_at
    assert second.started_at >= large.finished_at
    assert stored(serve_db, "uploads/bob/small.md") == 1
    assert stored(serve_db, "uploads/alice/large.md") == large.chunks_total
    assert not large.folder.exists() and not small.folder.exists()  # no raw upload left after ingest


def test_progress_is_reported_and_a_cancelled_upload_stores_nothing(jobs: UploadJobs, serve_db: str) -> None:  # noqa: F811
    job = jobs.submit("carol", "cancel-me.md", text_of(60, seed=1))
    deadline = time.monotonic() + 300
    while job.chunks_done < 8:
        assert job.status in ("queued", "running") and time.monotonic() < deadline, job.reason
        time.sleep(0.02)
    jobs.cancel(job.id, "carol")
    wait(job)
    assert job.status == "cancelled" and job.chunks_total is not None and job.chunks_done < job.chunks_total
    assert stored(serve_db, "uploads/carol/cancel-me.md") == 0
    assert not job.folder.exists()


def test_an_upload_over_the_chunk_budget_fails_with_the_reason(jobs: UploadJobs, serve_db: str) -> None:  # noqa: F811
    job = wait(jobs.submit("dave", "huge.md", text_of(120, seed=2)))
    assert job.status == "failed" and job.reason and "serve.max_upload_chunks=60" in job.reason
    assert stored(serve_db, "uploads/dave/huge.md") == 0 and not job.folder.exists()


def test_an_upload_out_of_time_fails_and_stores_nothing(cfg, serve_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    uploads = UploadJobs(cfg, replace(settings_of(cfg), upload_timeout_s=0.01, uploads_dir=str(tmp_path)))
    uploads.start()
    try:
        job = wait(uploads.submit("erin", "slow.md", LARGE))
    finally:
        uploads.stop()
    assert job.status == "failed" and job.reason and "serve.upload_timeout_s=0.01" in job.reason
    assert stored(serve_db, "uploads/erin/slow.md") == 0 and not job.folder.exists()


def test_a_queued_raw_upload_is_private_and_cancelling_deletes_it(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = replace(settings_of(cfg), max_queued_uploads=2, uploads_dir=str(tmp_path / "uploads"))
    uploads = UploadJobs(cfg, settings)  # not started: its jobs stay queued
    first = uploads.submit("frank", "a.md", SMALL)
    uploads.submit("frank", "b.md", SMALL)
    with pytest.raises(TooManyUploadsError, match=r"serve\.max_queued_uploads=2"):
        uploads.submit("frank", "c.md", SMALL)
    raw = first.folder / "a.md"
    assert stat.S_IMODE(raw.stat().st_mode) == 0o600
    for folder in (first.folder, first.folder.parent, uploads.root):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert uploads.cancel(first.id, "frank").status == "cancelled" and not first.folder.exists()
    uploads.submit("frank", "c.md", SMALL)  # room again
    uploads.stop()
    assert not any(uploads.root.rglob("*.md"))
