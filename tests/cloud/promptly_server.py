"""`promptly serve`'s app under a real uvicorn in a thread, on a free port: what the API, load and UI
tests and the benchmark talk to over HTTP (the app is the verb's own `build(cfg)`)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn
from omegaconf import DictConfig

from promptly.verbs.serve import build


class ServeThread:
    """Start with `with ServeThread(cfg) as server:`; `server.url` is the base URL; ready on entry."""

    def __init__(self, cfg: DictConfig, ready_timeout_s: float = 180.0) -> None:
        self.app: Any = build(cfg)
        self.ready_timeout_s = ready_timeout_s
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> ServeThread:
        self.thread.start()
        deadline = time.monotonic() + self.ready_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.wait_ready(deadline)
        return self

    def wait_ready(self, deadline: float) -> dict[str, Any]:
        while True:
            response = httpx.get(f"{self.url}/readyz", timeout=10)
            if response.status_code == 200:
                return dict(response.json())
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {response.text}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
