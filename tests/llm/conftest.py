"""A fake OpenAI-compatible chat-completions server on 127.0.0.1 (random port), scripted per test; a byte tokenizer.

Error replies carry ``retry-after-ms: 1`` unless the script sets a Retry-After header, so that the SDK's retries
in tests wait a millisecond instead of its exponential backoff.
"""

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
        tokens: ``usage.total_tokens`` of a completion.
    """

    content: Any = None
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    tokens: int = 10


class FakeOpenAI:
    """Records every request and answers from a script (FIFO), then from ``default`` (a function of the body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []  # time.monotonic() at each request's arrival
        self.script: list[Reply] = []
        self.default: Callable[[dict[str, Any]], Reply] = lambda body: Reply(status=500)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def contents(self) -> list[str]:
        """The last message's content of each request (what distinguishes the requests of one test)."""
        return [body["messages"][-1]["content"] for body in self.requests]

    def push(
        self, content: Any = None, status: int = 200, delay_s: float = 0.0, tokens: int = 10, **headers: str
    ) -> None:
        """Appends one scripted reply (headers as keyword arguments, ``Retry_After`` -> ``Retry-After``)."""
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        self.script.append(Reply(content, status, delay_s, extra, tokens))

    @staticmethod
    def reply(content: Any = None, status: int = 200, delay_s: float = 0.0, tokens: int = 10) -> Reply:
        """A reply object, for ``default`` functions that answer according to the request body."""
        return Reply(content, status, delay_s, tokens=tokens)

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
                    fake.times.append(time.monotonic())
                    fake.headers.append({key.title(): value for key, value in self.headers.items()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                counted = True
                try:
                    reply = fake._next(body) if self.path.endswith("/chat/completions") else Reply(status=404)
                    time.sleep(reply.delay_s)
                    headers = dict(reply.headers)
                    if reply.status == 200:
                        payload = _completion(body, reply)
                    else:
                        payload = {"error": {"message": f"scripted status {reply.status}"}}
                        if not any("retry-after" in key.lower() for key in headers):
                            headers["retry-after-ms"] = "1"
                    data = json.dumps(payload).encode()
                    with fake._lock:  # done before the client can read the reply and send its next request
                        fake.in_flight -= 1
                        counted = False
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
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


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients connect at once; the default backlog of 5 would drop SYNs (1 s stalls)


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A chat.completion object answering ``body`` with ``reply``."""
    content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}},
        ],
        "usage": {"prompt_tokens": reply.tokens // 2, "completion_tokens": reply.tokens - reply.tokens // 2,
                  "total_tokens": reply.tokens},
    }  # fmt: skip


@pytest.fixture(autouse=True)
def no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key, base URL or organization from the developer's environment reaches a test."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_LOG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started fake server; stopped after the test."""
    server = FakeOpenAI()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def byte_tokenizer() -> Any:
    """A tiny fast tokenizer (one token per byte, ChatML template): ``prepare_data`` without a model download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return tokenizer
