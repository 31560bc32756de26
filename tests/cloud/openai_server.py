"""A local stand-in for an OpenAI-compatible server: the chat-completions route the `openai` client calls.

`POST /v1/chat/completions` answers with whatever the test's `responder` returns for the request body
(a reply text, or a `Reply` with an HTTP status for errors, or a delay before answering), in the response
shape of OpenAI's API (`chat.completion` objects, or with `stream: true` server-sent `chat.completion.chunk`
events ending in `data: [DONE]`, a usage chunk when `stream_options.include_usage`; errors as
`{"error": {...}}`); `GET /v1/models` lists the served models.
Requests need `Authorization: Bearer <api_key>` like the real service. Every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """A scripted answer: the assistant's text, or an error status with its message."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    """Seconds to wait before answering (an engine that hangs)."""


Responder = Callable[[dict[str, Any]], "str | Reply"]


class OpenAIServer:
    """Serve on 127.0.0.1 (a free port) in a thread; use as a context manager."""

    def __init__(self, responder: Responder, model: str = "local-model", api_key: str = "sk-local-test",
                 also_serves: tuple[str, ...] = ()) -> None:
        self.responder, self.model, self.api_key = responder, model, api_key
        self.models = (model, *also_serves)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, kind: str) -> None:
                self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._error(401, "Incorrect API key provided.", "invalid_request_error")
                return False

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self._error(404, f"Unknown route GET {self.path}", "invalid_request_error")
                elif self._authorized():
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "local"} for m in server.models]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._error(404, f"Unknown route POST {self.path}", "invalid_request_error")
                    return
                if not self._authorized():
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
                    return
                if body.get("model") not in server.models or not isinstance(body.get("messages"), list):
                    self._error(404, f"The model `{body.get('model')}` does not exist.", "invalid_request_error")
                    return
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = server.responder(body)
                if isinstance(reply, Reply) and reply.delay_s:
                    time.sleep(reply.delay_s)
                if isinstance(reply, Reply) and reply.status != 200:
                    self._error(reply.status, reply.content or "The server had an error.", "server_error")
                    return
                content = reply.content if isinstance(reply, Reply) else reply
                if body.get("stream"):
                    self._stream(body, content)
                    return
                self._send(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                    "created": int(time.time()), "model": server.model, "system_fingerprint": "fp_local",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                })

            def _stream(self, body: dict[str, Any], content: str) -> None:
                """The reply word by word as server-sent events (HTTP/1.0: the body ends when the connection does)."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": body["model"], "system_fingerprint": "fp_local"}
                words = re.findall(r"\s*\S+|\s+$", content)
                pieces = [{"role": "assistant", "content": ""}, *({"content": w} for w in words)]
                events = [{**base, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]}
                          for d in pieces]
                end = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
                events.append({**base, "choices": [end]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    events.append({**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(words),
                                                                    "total_tokens": 7 + len(words)}})
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler
