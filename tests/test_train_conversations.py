"""Learning from users: the tiny model trained with data=conversations learns the liked answers by heart
(debug=overfit) and never sees a disliked one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptly.ingest.chunking import TokenChunker
from promptly.ingest.documents import SourceConfig, load_source
from promptly.ingest.embedding import Embedder
from promptly.ingest.splits import SplitConfig, split_for_document
from promptly.ingest.sync import sync_documents
from promptly.store.postgres import PostgresStore
from promptly.verbs.train import train

from .test_train_common import FAST, SAMPLE_DATA, _wandb_offline, location, tiny_state, train_config  # noqa: F401
from .test_train_overfit import LossRecorder

PRODUCT = "driftsync"


@pytest.mark.slow
def test_tiny_model_learns_the_liked_conversations(pg_url: str, pg_store: PostgresStore, embedder: Embedder,
                                                     tiny_state: Path, tmp_path: Path) -> None:  # noqa: F811
    chunker = TokenChunker(chunk_tokens=128, overlap_tokens=16)
    source = SourceConfig(path=str(SAMPLE_DATA / "docs" / PRODUCT), id_prefix=f"{PRODUCT}/")
    assert sync_documents(load_source(source, chunker.fingerprint()), pg_store, chunker, embedder).ok
    first_chunk = {}
    for chunk in pg_store.iter_chunks():
        first_chunk.setdefault(chunk.document_id, chunk.id)
    rows = [json.loads(line) for line in (SAMPLE_DATA / "qa.jsonl").read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if r["document_id"] in first_chunk
                  and split_for_document(r["document_id"], SplitConfig()) == "train"]
    liked, disliked = train_rows[:8], train_rows[8:11]
    assert len(liked) == 8 and len(disliked) == 3
    # Interleaved in time (liked, disliked, unrated, ...), the order the store streams them in: a filter
    # that let disliked or unrated ones through would put them among the first examples, not after them.
    order = ["up", "down", None, "up", "up", "down", "up", None, "up", "up", "down", "up", "up"]
    queue = {"up": iter(liked), "down": iter(disliked), None: iter(disliked)}
    for feedback in order:
        r = next(queue[feedback])
        answer = {"up": r["answer"], "down": "Nobody knows that.", None: "Unrated guess."}[feedback]
        pg_store.add_conversation(r["question"], answer, [first_chunk[r["document_id"]]], "v0", feedback=feedback)
    assert [c.feedback for c in pg_store.iter_conversations()] == order

    out = tmp_path / "run"
    LossRecorder.losses = []
    cfg = train_config([*location(tmp_path, tiny_state, pg_url, out), *FAST, "debug=overfit", "data=conversations",
                        "data.max_length=256", "data.limit.train=32", "data.limit.validation=32", "callbacks=none",
                        f"+callbacks.record._target_={LossRecorder.__module__}.LossRecorder",
                        "trainer.max_epochs=45", "trainer.check_val_every_n_epoch=45"], out)
    metrics, objects = train(cfg)

    datamodule = objects["datamodule"]
    assert datamodule.stats["train"]["examples"] == 8  # the liked ones, nothing else (the limit is 32)
    trained = datamodule.samples(32, "train")
    assert sorted(s.answer for s in trained) == sorted(r["answer"] for r in liked)
    losses = LossRecorder.losses
    assert losses[-1] < 0.02 * losses[0], losses[::10]
    rows_out = objects["module"].last_samples
    assert sorted(r["reference"] for r in rows_out) == sorted(r["answer"] for r in liked)
    assert sum(r["exact_match"] for r in rows_out) >= 7, [(r["reference"], r["generated"]) for r in rows_out]
    assert not any("Nobody knows" in r["generated"] or "Unrated" in r["generated"] for r in rows_out)
    print(f"conversations overfit: loss {losses[0]:.3f} -> {losses[-1]:.4f}, exact match "
          f"{sum(r['exact_match'] for r in rows_out):.0f}/8, val/loss {metrics['val/loss']:.4f}")
