"""A small OpenAI-compatible chat-completions client (standard library only) with retries and a reply cache.

``ChatClient.chat_json`` sends one request per attempt and retries, with exponential backoff, on HTTP 408/409/429
and 5xx, on timeouts and connection errors, and on replies that are not valid JSON or fail the caller's
validation. Other HTTP errors (400, 401, 403, 404) are not retried. Validated replies are cached on disk, keyed by
(model, full request payload, namespace), so a rerun makes no request for what it already has.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from hipo.llm.cache import JsonCache, request_key

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class LLMError(RuntimeError):
    """A request that failed for good (retries exhausted or a non-retryable error).

    Attributes:
        kind: what the last attempt ran into: ``http``, ``timeout``, ``connection`` or ``invalid`` (a reply that
            was not JSON or failed validation).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidReply(ValueError):
    """A reply that arrived but is not usable (not JSON, wrong schema); raised by validators to ask for a retry."""


def parse_json_reply(content: str) -> Any:
    """The JSON value in a model reply, tolerating a surrounding Markdown code fence; raises ``InvalidReply``."""
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidReply(f"reply is not valid JSON ({error.msg}): {content[:200]!r}") from error


@dataclass
class ClientStats:
    """Counters of one client (thread-safe updates through ``ChatClient``)."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0


@dataclass
class ChatClient:
    """An OpenAI-compatible ``/chat/completions`` client.

    Attributes:
        base_url: API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: model name sent in each request.
        api_key: bearer token; None reads the environment variable ``api_key_env``.
        api_key_env: environment variable holding the key.
        timeout_s: socket timeout of one request.
        max_retries: retries after the first attempt (so at most ``1 + max_retries`` requests per call).
        backoff_s: first retry delay; doubles per retry (with up to 25% jitter), capped by ``max_backoff_s``.
        temperature: sampling temperature sent with each request.
        max_tokens: reply token cap (None: the server's default).
        json_mode: ask for ``response_format={"type": "json_object"}``.
        cache_dir: folder of the reply cache; None disables caching.
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    api_key: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = True
    cache_dir: str | Path | None = None
    stats: ClientStats = field(default_factory=ClientStats, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(self.api_key_env) or None
        host = urlparse(self.base_url).hostname or ""
        if self.api_key is None and host.endswith("openai.com"):
            raise ValueError(f"no API key for {self.base_url}: set {self.api_key_env} or pass api_key")
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError(f"invalid client settings: max_retries={self.max_retries}, timeout_s={self.timeout_s}")
        self._cache = JsonCache(self.cache_dir) if self.cache_dir is not None else None
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def payload(self, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """The request body for ``messages`` (also the cache key's content)."""
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages]}
        body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _post(self, body: Mapping[str, Any]) -> str:
        """One HTTP request; the reply's message content. Raises urllib/socket errors or ``InvalidReply``."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.base_url.rstrip('/')}/chat/completions",
            data=json.dumps(body).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        self._count("requests")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            raw = response.read().decode("utf-8")
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise InvalidReply(f"not a chat-completions response: {raw[:200]!r}") from error
        if not isinstance(content, str):
            raise InvalidReply(f"message content is not a string: {content!r}")
        return content

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); honors a numeric Retry-After header."""
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        base = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        return base * (1 + 0.25 * random.random())

    def chat_json(self, messages: Sequence[Mapping[str, str]], validate: Callable[[Any], T], namespace: str = "") -> T:
        """Sends ``messages`` and returns ``validate(parsed JSON reply)``, retrying as described in the module doc.

        Args:
            messages: chat messages (``role``/``content`` dicts).
            validate: turns the parsed JSON into the caller's type; raises ``InvalidReply`` (or ``ValueError``)
                for a reply that must be asked for again.
            namespace: separates the cache entries of different uses of the same model and prompt.

        Raises:
            LLMError: all attempts failed, or a non-retryable HTTP error.
        """
        body = self.payload(messages)
        key = request_key(self.model, body, namespace)
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None:
                try:
                    result = validate(cached)
                    self._count("cache_hits")
                    return result
                except ValueError:
                    log.warning("ignoring a cached reply that no longer validates (key %s)", key[:12])
        last_error, kind = "no attempt made", "connection"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                parsed = parse_json_reply(self._post(body))
                result = validate(parsed)
                if self._cache is not None:
                    self._cache.put(key, parsed)
                return result
            except urllib.error.HTTPError as error:
                last_error, kind = f"HTTP {error.code}: {error.read()[:200]!r}", "http"
                if error.code not in RETRYABLE_STATUS:
                    self._count("failures")
                    raise LLMError(f"{self.base_url}: {last_error} (not retried)", kind) from error
                retry_after = error.headers.get("Retry-After") if error.headers else None
            except TimeoutError as error:
                last_error, kind = f"timeout after {self.timeout_s}s ({error})", "timeout"
            except urllib.error.URLError as error:
                kind = "timeout" if isinstance(error.reason, TimeoutError) else "connection"
                last_error = f"{kind} error: {error.reason}"
            except (OSError, http.client.HTTPException) as error:  # resets, remote disconnects
                last_error, kind = f"connection error: {error!r}", "connection"
            except (InvalidReply, ValueError) as error:
                last_error, kind = f"invalid reply: {error}", "invalid"
            if attempt < self.max_retries:
                self._count("retries")
                delay = self._delay(attempt, retry_after)
                log.info(
                    "LLM request failed (%s); retry %d/%d in %.2fs", last_error, attempt + 1, self.max_retries, delay
                )
                time.sleep(delay)
        self._count("failures")
        message = f"{self.base_url}: gave up after {self.max_retries + 1} attempts; last error: {last_error}"
        raise LLMError(message, kind)
