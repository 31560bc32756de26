"""The model being served, and switching to a newly promoted version without a restart.

A `ModelSlot` is one loaded model with the name clients use for it. The `ModelManager` loads the
configured model (a run, an export, a base option) or the store's active version, and, when following
the registry, polls `active_model_version()`: a new version is loaded in the background while the old
one keeps answering, then swapped in with one assignment. Requests hold the slot they started with, so
a swap never mixes one model's prompt with another's weights.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, open_dict

from promptly.errors import ConfigError
from promptly.model.loading import LoadedModel, adopt_model_data, load_model
from promptly.serving.compute import on_passing_thread
from promptly.serving.config import resolved_copy
from promptly.serving.metrics import ServerMetrics
from promptly.serving.store_pool import StorePool
from promptly.store.base import ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSlot:
    """A loaded model and what clients and conversations call it."""

    loaded: LoadedModel
    model_id: str
    """The name /v1/models lists and answers carry: `<repo_id>@<version>` for a registry version."""
    version: ModelVersion | None = None
    """The registry version, when one is served (its config has the evaluation report)."""
    engine_model: str | None = None
    """The model name the OpenAI-compatible engine is asked for (serve.engine=openai); None: generated here."""


def version_id(version: ModelVersion) -> str:
    return f"{version.repo_id}@{version.version}"


def explicit_model(cfg: DictConfig) -> bool:
    return bool(cfg.get("run_dir") or cfg.get("model_dir") or cfg.get("model") is not None)


class ModelManager:
    """Loads the model to serve and, with `follow`, swaps in each newly active version."""

    def __init__(self, cfg: DictConfig, pool: StorePool, follow: bool, poll_s: float, metrics: ServerMetrics) -> None:
        self.cfg, self.pool, self.follow, self.poll_s, self.metrics = cfg, pool, follow, poll_s, metrics
        self.current: ModelSlot | None = None
        self.error: str | None = None
        """Why no model is served yet (shown by /readyz)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promptly-models", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            if not (self.follow and self._check_active()) and self.has_configured():
                self.current = self.load_configured()
                log.info("serving %s", self.current.model_id)
            elif self.current is None:
                self.error = self.nothing_to_serve()
        except Exception as err:  # shown by /readyz; the server stays up to say why
            self.error = f"loading the model failed: {err}"
            log.exception("loading the model failed")
        while self.follow and not self._stop.wait(self.poll_s):
            try:
                self._check_active()
            except Exception:  # a failed poll or load keeps the current model; the next poll tries again
                log.exception("switching to the active model version failed")

    def has_configured(self) -> bool:
        """Whether a model is configured to serve when no registry version is (model=, run_dir=, model_dir=)."""
        return explicit_model(self.cfg)

    def nothing_to_serve(self) -> str:
        return ("no model to serve: the store has no active model version (`promptly publish promote`), and no "
                "model=, run_dir= or model_dir= was given")

    def load_configured(self) -> ModelSlot:
        loaded = on_passing_thread(load_model, self.cfg)
        return ModelSlot(loaded, loaded.name)

    def _check_active(self) -> bool:
        """Load and swap in the active version if it is not the one served; True when one is served."""
        with self.pool.store() as store:
            active = store.active_model_version()
        if active is None:
            return self.current is not None
        current = self.current.version if self.current else None
        if current and (current.repo_id, current.version, current.revision) == (
                active.repo_id, active.version, active.revision):
            return True
        self.current = self.load_version(active)
        self.error = None
        self.metrics.model_switches.inc()
        log.info("serving %s", self.current.model_id)
        return True

    def load_version(self, version: ModelVersion) -> ModelSlot:
        """A registry version's folder (local registry), loaded like any exported folder."""
        location = str(version.config.get("location") or "")
        if not Path(location).is_dir():
            raise ConfigError(f"active version {version_id(version)} is at {location or '(no location)'}, not a "
                              "local folder: serve it from the local registry, or download it and pass model_dir=")
        cfg = resolved_copy(self.cfg)
        with open_dict(cfg):
            cfg.run_dir, cfg.model_dir, cfg.ckpt_path = None, location, None
        cfg = adopt_model_data(cfg)  # the prompt and length the version was trained with (its promptly.json)
        started = time.monotonic()
        loaded = on_passing_thread(load_model, cfg)
        log.info("loaded %s in %.1f s", version_id(version), time.monotonic() - started)
        return ModelSlot(loaded, version_id(version), version)
