"""JSON chat completions over the ``openai`` SDK, with this project's reply cache and reply validation on top.

Transport is the SDK's: any OpenAI-compatible ``base_url`` (the API, vLLM, llama.cpp server, Ollama), its timeout,
its retries with exponential backoff on 408/409/429/5xx and connection errors, and its handling of ``Retry-After``.
On top, ``ChatClient.complete_json``:

* looks the request up in the on-disk reply cache (content-addressed by model, request body and namespace) and
  makes no request on a hit;
* parses the reply as JSON (tolerating a Markdown code fence) and passes it to the caller's ``validate``; an
  unusable reply is asked for again, up to ``max_invalid_retries`` times;
* writes the validated reply to the cache as soon as it arrives (so an interrupted run repeats no finished request);
* reports whether the reply came from the cache and the tokens it used (``usage.total_tokens``).

The API key is read from the environment variable named by ``api_key_env`` and handed to the SDK only: it is not an
attribute of ``ChatClient``, so it never reaches a repr, a log record, an exception message or the cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlparse

import openai

from hipo.llm.pool import RateLimiter
from hipo.llm.reply_cache import JsonCache, request_key

log = logging.getLogger(__name__)

T = TypeVar("T")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
# Sent to hosts that need no key (local servers); the SDK insists on some value.
PLACEHOLDER_KEY = "no-key"
# Statuses the SDK retries (with backoff, honouring Retry-After): the rest fail at once.
RETRIED_STATUS = frozenset({408, 409, 429})


class LLMError(RuntimeError):
    """A request that failed for good (the SDK's retries or the re-asks are exhausted, or a non-retried error).

    Attributes:
        kind: what the last attempt ran into: ``http``, ``timeout``, ``connection`` or ``invalid`` (a reply that
            was not JSON or failed validation).
        tokens: tokens the unusable replies used (they are billed all the same).
    """

    def __init__(self, message: str, kind: str, tokens: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.tokens = tokens


class InvalidReply(ValueError):
    """A reply that arrived but is not usable (not JSON, wrong schema); raised by validators to ask again."""


def parse_json_reply(content: str) -> Any:
    """The JSON value in a model reply, tolerating a surrounding Markdown code fence; raises ``InvalidReply``."""
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidReply(f"reply is not valid JSON ({error.msg}): {content[:200]!r}") from error


@dataclass(frozen=True)
class ChatResult(Generic[T]):
    """A validated reply: the caller's value, whether it came from the cache, and the tokens the request used."""

    value: T
    cached: bool = False
    tokens: int = 0


def resolve_api_key(base_url: str, api_key_env: str) -> str:
    """The key in ``$api_key_env``; a placeholder for hosts other than api.openai.com, else a ``ValueError``."""
    key = os.environ.get(api_key_env)
    if key:
        return key
    host = urlparse(base_url).hostname or ""
    if host == "openai.com" or host.endswith(".openai.com"):
        raise ValueError(f"no API key for {base_url}: set the environment variable {api_key_env}")
    return PLACEHOLDER_KEY


@dataclass
class ChatClient:
    """An OpenAI-compatible chat-completions client that returns validated, cached JSON replies.

    Attributes:
        base_url: API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: model name sent in each request.
        api_key_env: name of the environment variable holding the key (a local server needs none).
        timeout_s: the SDK's timeout of one HTTP attempt.
        max_retries: the SDK's retries after a failed attempt (408/409/429/5xx, timeouts, connection errors).
        max_invalid_retries: how many times a reply that is not JSON or fails validation is asked for again.
        requests_per_minute: cap on HTTP attempts started per minute by this client (None: no cap); starts are
            spaced ``60 / requests_per_minute`` seconds apart, retries included, cache hits excluded.
        temperature: sampling temperature sent with each request.
        max_tokens: reply token cap (None: the server's default).
        json_mode: ask for ``response_format={"type": "json_object"}``.
        cache_dir: folder of the reply cache; None disables caching.
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    max_invalid_retries: int = 2
    requests_per_minute: float | None = None
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = True
    cache_dir: str | Path | None = None

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_invalid_retries < 0 or self.timeout_s <= 0:
            raise ValueError(
                f"invalid client settings: max_retries={self.max_retries}, "
                f"max_invalid_retries={self.max_invalid_retries}, timeout_s={self.timeout_s}"
            )
        self._cache = JsonCache(self.cache_dir) if self.cache_dir is not None else None
        limiter = RateLimiter(self.requests_per_minute) if self.requests_per_minute else None
        hooks = {"request": [lambda _request: limiter.wait()]} if limiter is not None else {}
        self._sdk = openai.OpenAI(
            api_key=resolve_api_key(self.base_url, self.api_key_env),
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=self.max_retries,
            http_client=openai.DefaultHttpxClient(event_hooks=hooks),
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickles the settings only: the SDK client (which holds the key) is rebuilt from the environment."""
        return {name: value for name, value in self.__dict__.items() if name not in ("_sdk", "_cache")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def _scrub(self, text: str) -> str:
        """``text`` with the key replaced, should a server echo it back in an error."""
        key = str(self._sdk.api_key or "")
        return text.replace(key, "[redacted]") if key and key != PLACEHOLDER_KEY else text

    def payload(self, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """The request body for ``messages`` (also the cache key's content)."""
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages]}
        body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _send(self, body: Mapping[str, Any]) -> tuple[str | None, int]:
        """One SDK call (with its retries): the reply's content (None if absent) and total tokens.

        Raises:
            LLMError: the SDK gave up (or the error is not one it retries); the message carries no credentials.
        """
        try:
            completion = self._sdk.chat.completions.create(**body)
        except openai.APITimeoutError as error:
            message = f"{self.base_url}: timeout ({self.timeout_s} s) on every attempt ({self.max_retries} retries)"
            raise LLMError(message, "timeout") from error
        except openai.APIConnectionError as error:
            raise LLMError(f"{self.base_url}: connection failed ({self._scrub(str(error))})", "connection") from error
        except openai.APIStatusError as error:
            status = error.status_code
            retried = status in RETRIED_STATUS or status >= 500
            note = f"after {self.max_retries} retries" if retried else "not retried"
            detail = self._scrub(error.message[:300])
            raise LLMError(f"{self.base_url}: HTTP {status} ({note}): {detail}", "http") from error
        usage = getattr(completion, "usage", None)
        tokens = int(getattr(usage, "total_tokens", 0) or 0)
        choices = completion.choices or []
        content = choices[0].message.content if choices else None
        return (content if isinstance(content, str) else None), tokens

    def complete_json(
        self, messages: Sequence[Mapping[str, str]], validate: Callable[[Any], T], namespace: str = ""
    ) -> ChatResult[T]:
        """``validate(parsed JSON reply)`` for ``messages``, from the cache or the server (see the module doc).

        Args:
            messages: chat messages (``role``/``content`` dicts).
            validate: turns the parsed JSON into the caller's type; raises ``InvalidReply`` (or ``ValueError``)
                for a reply that must be asked for again.
            namespace: separates the cache entries of different uses of the same model and prompt.

        Raises:
            LLMError: the request failed (``kind`` http/timeout/connection) or every reply was unusable
                (``kind`` invalid).
        """
        body = self.payload(messages)
        key = request_key(self.model, body, namespace)
        cached = self._cached(key, validate)
        if cached is not None:
            return cached
        tokens, last_error = 0, "no attempt made"
        for attempt in range(self.max_invalid_retries + 1):
            content, used = self._send(body)
            tokens += used
            try:
                if content is None:
                    raise InvalidReply("the reply has no message content")
                parsed = parse_json_reply(content)
                value = validate(parsed)
            except ValueError as error:  # InvalidReply included
                last_error = str(error)
                log.info("unusable reply (attempt %d/%d): %s", attempt + 1, self.max_invalid_retries + 1, error)
                continue
            if self._cache is not None:
                self._cache.put(key, parsed)
            return ChatResult(value, cached=False, tokens=tokens)
        attempts = self.max_invalid_retries + 1
        message = f"{self.base_url}: no usable reply in {attempts} attempts; last: {last_error}"
        raise LLMError(message, "invalid", tokens=tokens)

    def _cached(self, key: str, validate: Callable[[Any], T]) -> ChatResult[T] | None:
        """The cached reply for ``key`` when there is one that still validates."""
        if self._cache is None:
            return None
        reply = self._cache.get(key)
        if reply is None:
            return None
        try:
            return ChatResult(validate(reply), cached=True, tokens=0)
        except ValueError:
            log.warning("ignoring a cached reply that no longer validates (key %s)", key[:12])
            return None

    def chat_json(self, messages: Sequence[Mapping[str, str]], validate: Callable[[Any], T], namespace: str = "") -> T:
        """``complete_json(...).value``."""
        return self.complete_json(messages, validate, namespace).value
