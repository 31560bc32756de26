"""A local webhook receiver on 127.0.0.1 that answers like Slack's, Discord's or any JSON webhook:
scripted statuses per request (200, 204, 500, 429 with Retry-After, ...), or never answering at all
(`hang=True`), so the notifier's retries and timeouts are exercised for real. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    raw: str
    headers: dict[str, str]


class WebhookServer:
    """Use as a context manager; `url(path)` is a webhook URL on this server."""

    def __init__(self, statuses: list[int] | None = None, hang: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses or [])
        """One status per request, in order; 200 once they run out (Slack answers `ok`, 200)."""
        self.hang = hang
        self.extra_headers = dict(headers or {})
        self.received: list[Received] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def bodies(self, path_prefix: str = "") -> Iterator[dict[str, Any]]:
        return (r.body for r in list(self.received) if r.path.startswith(path_prefix))

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()  # let hanging handlers end, so shutdown does not wait on them
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode("utf-8")
                with server._lock:
                    server.received.append(Received(self.path, json.loads(raw) if raw else {}, raw,
                                                    {k.lower(): v for k, v in self.headers.items()}))
                    status = server.statuses.pop(0) if server.statuses else 200
                if server.hang:
                    server._release.wait(60)
                    return
                body = b"ok" if status < 300 else b'{"message": "scripted failure"}'
                self.send_response(status)
                for key, value in server.extra_headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
