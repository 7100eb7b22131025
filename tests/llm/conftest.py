"""A fake OpenAI-compatible chat-completions server on 127.0.0.1 (random port), scripted per test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    """One scripted server action.

    Attributes:
        content: the assistant message content (a dict/list is JSON-encoded; a str is sent verbatim).
        status: HTTP status; != 200 sends an error body instead of a completion.
        delay_s: seconds to sleep before answering (longer than the client timeout = a timeout).
        headers: extra response headers (e.g. Retry-After).
    """

    content: Any = None
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class FakeOpenAI:
    """Records every request and answers from a script (FIFO), then from ``default`` (a function of the body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[Reply] = []
        self.default: Callable[[dict[str, Any]], Reply] = lambda body: Reply(status=500)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def push(self, content: Any = None, status: int = 200, delay_s: float = 0.0, **headers: str) -> None:
        """Appends one scripted reply (headers as keyword arguments, ``Retry_After`` -> ``Retry-After``)."""
        self.script.append(Reply(content, status, delay_s, {k.replace("_", "-"): v for k, v in headers.items()}))

    @staticmethod
    def reply(content: Any = None, status: int = 200, delay_s: float = 0.0) -> Reply:
        """A reply object, for ``default`` functions that answer according to the request body."""
        return Reply(content, status, delay_s)

    def always(self, content: Any = None, status: int = 200, delay_s: float = 0.0) -> None:
        """The reply once the script is exhausted."""
        self.default = lambda body: Reply(content, status, delay_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            if self.script:
                return self.script.pop(0)
        return self.default(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # silence the per-request log
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with fake._lock:
                    fake.headers.append(dict(self.headers))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                counted = True
                try:
                    reply = fake._next(body) if self.path.endswith("/chat/completions") else Reply(status=404)
                    time.sleep(reply.delay_s)
                    if reply.status == 200:
                        content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
                        payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                    else:
                        payload = {"error": {"message": f"scripted status {reply.status}"}}
                    data = json.dumps(payload).encode()
                    with fake._lock:  # done before the client can read the reply and send its next request
                        fake.in_flight -= 1
                        counted = False
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and hung up
                    pass
                finally:
                    if counted:
                        with fake._lock:
                            fake.in_flight -= 1

        return Handler


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started fake server; stopped after the test."""
    server = FakeOpenAI()
    server.start()
    try:
        yield server
    finally:
        server.stop()
