"""One model load at a time in a process (promptly.utils.concurrency.MODEL_LOADS): transformers patches torch's
init functions process-wide while it loads, and a server that loaded its model and its embedder on two threads
at once answered in random words. A served model's load and the embedder's load each wait while another thread
holds the lock, and finish once it is released."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptly.ingest.embedding import Embedder
from promptly.model.loading import load_model
from promptly.utils.concurrency import MODEL_LOADS

from .conftest import REPO_ROOT, compose, resolved


def waits_for_the_lock(load: Callable[[], Any]) -> None:
    """`load` on another thread does not finish while this thread holds MODEL_LOADS, and does after."""
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            load()
        except BaseException as err:
            errors.append(err)
        done.set()

    with MODEL_LOADS:  # a load in progress on this thread
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert not done.wait(3.0), "the load did not wait for the one in progress"
    assert done.wait(120) and errors == []


def test_the_embedder_loads_only_when_no_other_load_runs() -> None:
    assert Embedder().model is not None  # imports and files warm: the load below takes well under the wait
    embedder = Embedder()
    waits_for_the_lock(lambda: embedder.model)
    assert embedder.embed_queries(["which port?"]).shape == (1, embedder.dimension)


def test_a_served_model_loads_only_when_no_other_load_runs(tmp_path: Path) -> None:
    cfg = resolved(compose("serve", [f"paths.data_dir={REPO_ROOT / 'sample_data'}", f"paths.state_dir={tmp_path}",
                                     "model=tiny", "model.tiny.num_hidden_layers=2"]))
    load_model(cfg)  # the tokenizer trained and cached: the load below takes well under the wait
    loaded: list[Any] = []
    waits_for_the_lock(lambda: loaded.append(load_model(cfg)))
    assert loaded and loaded[0].name == "tiny"
