"""How long one user's small upload waits while another user's large upload is being ingested.

The upload jobs of `promptly serve` (promptly/serving/upload_jobs.py, its default settings: 2 workers,
32 chunks per step) on an embedded store, without HTTP. In one run:

- baseline: a 127-byte file from bob, alone (submit to done);
- alice submits a large Markdown file (--large-kb of prose), and once it is embedding, bob submits the
  same 127-byte file again: its submit-to-done time, and alice's time and chunks per second.

The last line is `small_alone_s=<s> small_beside_large_s=<s> large_s=<s> large_chunks_per_s=<n>`.
Before uploads were jobs, the small file waited for the whole large ingest (one lock for all users).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from promptly.serving.config import resolved_copy
from promptly.serving.upload_jobs import FINISHED, UploadJob, UploadJobs
from promptly.store.embedded import EmbeddedPostgresStore
from promptly.verbs.entry import config_dir
from promptly.verbs.serve import settings_of

SMALL = b"# Note\n\nThe heron cluster rotates its TLS certificates every 41 days; ask the ops channel.\n"[:127]
WORDS = ["quillmq", "retry", "queue", "config", "broker", "partition", "consumer", "lag", "offset", "commit",
         "replay", "dead", "letter", "heron", "cluster", "ledger", "snapshot", "tenant", "shard", "window"]


def prose(kilobytes: int) -> bytes:
    rng = random.Random(0)
    paragraphs, size = [], 0
    while size < kilobytes * 1000:
        paragraph = " ".join(rng.choice(WORDS) for _ in range(80)) + "."
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return ("# Product words\n\n" + "\n\n".join(paragraphs) + "\n").encode()


def wait(job: UploadJob) -> float:
    while job.status not in FINISHED:
        time.sleep(0.02)
    assert job.status == "done", job.reason
    assert job.finished_at is not None
    return job.finished_at - job.created_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large-kb", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        overrides = [f"paths.root_dir={state}", f"paths.output_dir={state}", f"paths.state_dir={state}",
                     f"store.data_dir={state / 'pgdata'}"]
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = resolved_copy(compose(config_name="serve", overrides=overrides))
        store = EmbeddedPostgresStore(cfg.store.data_dir, embedding_dim=int(cfg.embedder.dimension))
        store.migrate()
        jobs = UploadJobs(cfg, settings_of(cfg))
        jobs.start()
        try:
            wait(jobs.submit("warmup", "warm.md", SMALL))  # loads the embedder and the recognizers
            alone = wait(jobs.submit("bob", "alone.md", SMALL))
            large = jobs.submit("alice", "large.md", prose(args.large_kb))
            while large.chunks_done == 0 and large.status not in FINISHED:
                time.sleep(0.05)
            beside = wait(jobs.submit("bob", "beside.md", SMALL))
            still_running = large.status == "running"
            large_s = wait(large)
        finally:
            jobs.stop()
            store.close()
    assert still_running, "the large upload ended before the small one: use a larger --large-kb"
    chunks = large.result["chunks_written"] if large.result else 0
    print(f"large upload: {args.large_kb} kB, {chunks} chunks, {large_s:.1f} s")
    print(f"small_alone_s={alone:.2f} small_beside_large_s={beside:.2f} large_s={large_s:.1f} "
          f"large_chunks_per_s={chunks / large_s:.1f}")


if __name__ == "__main__":
    main()
