"""`promptly serve`: the OpenAI-compatible RAG API under uvicorn.

    promptly serve                                               # the store's active version (follows promote)
    promptly serve model=smollm2_135m_instruct serve.port=8765   # a base model
    promptly serve model=tiny serve.check=true                   # start, wait for /readyz, exit
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from promptly.errors import ConfigError, PromptlyError
from promptly.serving.config import ServeSettings, resolved_copy
from promptly.verbs.entry import hydra_entry, task_overrides
from promptly.verbs.task_wrapper import TaskOutput

log = logging.getLogger(__name__)


def settings_of(cfg: DictConfig) -> ServeSettings:
    return ServeSettings(**OmegaConf.to_container(cfg.serve, resolve=True))  # type: ignore[arg-type]


def build(cfg: DictConfig) -> Any:
    """The FastAPI app for a (resolved) serve config; tests and the benchmark call this too."""
    from promptly.serving.api import create_app
    from promptly.serving.engine import Engine
    from promptly.serving.upload_jobs import UploadJobs, upload_redactor

    cfg = resolved_copy(_with_model_data(cfg))
    settings = settings_of(cfg)
    redactor = upload_redactor(cfg)  # one for conversations and uploads: the recognizers load once
    uploads = UploadJobs(cfg, settings, redactor) if cfg.get("ingest") else None
    return create_app(Engine(cfg, settings, redactor=redactor if settings.redact_conversations else None), uploads)


def _with_model_data(cfg: DictConfig) -> DictConfig:
    """The configured run's or export's data settings (retrieval k and mode, prompt), command-line `data.*`
    first; a model that cannot be read is left to the model manager, which says why on /readyz."""
    from promptly.model.loading import adopt_model_data

    try:
        return adopt_model_data(copy.deepcopy(cfg), task_overrides())
    except (PromptlyError, OSError) as err:
        log.warning("serving with the configured data settings: %s", err)
        return cfg


def run(cfg: DictConfig) -> int:
    """Serve until stopped (Ctrl-C); with serve.check, until ready, then exit. Returns the exit status."""
    import uvicorn

    settings = settings_of(cfg)
    app = build(cfg)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           access_log=False, lifespan="on"))
    if not settings.check:
        _announce(server, settings)
        server.run()
        return 0
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return _check(server, settings, thread)


def _announce(server: Any, settings: ServeSettings) -> None:
    def say() -> None:
        while not server.started:
            time.sleep(0.05)
        for s in server.servers:
            for sock in s.sockets:
                host, port = sock.getsockname()[:2]
                print(f"promptly serve: listening on http://{host}:{port} (GET /readyz for the model)", flush=True)

    threading.Thread(target=say, daemon=True).start()


def _check(server: Any, settings: ServeSettings, thread: threading.Thread) -> int:
    import httpx

    deadline = time.monotonic() + settings.request_timeout_s + 300
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the server did not start on {settings.host}:{settings.port}")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://{settings.host}:{port}/readyz"
    try:
        while True:
            response = httpx.get(url, timeout=10)
            if response.status_code == 200:
                print(f"promptly serve: ready: {response.json()['model']}", flush=True)
                return 0
            reason = response.json().get("reason", "")
            if "loading" not in reason and "not been checked" not in reason:
                raise PromptlyError(f"not ready: {reason}")
            if time.monotonic() > deadline:
                raise PromptlyError(f"not ready after {settings.request_timeout_s + 300:.0f} s: {reason}")
            time.sleep(0.2)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def task(cfg: DictConfig) -> TaskOutput:
    return {}, {"exit_code": run(cfg)}


main = hydra_entry("serve", run_folder=False)(task)
