"""ChatClient against the fake server: good replies, malformed JSON, 429/5xx/401, timeouts, the on-disk cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hipo.llm.cache import JsonCache, request_key
from hipo.llm.client import ChatClient, InvalidReply, LLMError, parse_json_reply

MESSAGES = [{"role": "user", "content": "Give me a JSON object with x."}]


def needs_x(reply: Any) -> int:
    """A validator: the reply must be an object with an integer ``x``."""
    if not isinstance(reply, dict) or not isinstance(reply.get("x"), int):
        raise InvalidReply(f"no integer x in {reply!r}")
    return reply["x"]


def make_client(server: Any, **overrides: Any) -> ChatClient:
    settings: dict[str, Any] = {
        "base_url": server.url,
        "model": "fake-judge",
        "api_key": "sk-test",
        "timeout_s": 2.0,
        "max_retries": 2,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
    }
    settings.update(overrides)
    return ChatClient(**settings)


def test_good_reply_and_request_shape(fake_openai) -> None:
    fake_openai.push({"x": 3})
    client = make_client(fake_openai, temperature=0.0, max_tokens=50)
    assert client.chat_json(MESSAGES, needs_x) == 3
    assert fake_openai.count == 1
    body = fake_openai.requests[0]
    assert body["model"] == "fake-judge"
    assert body["messages"] == MESSAGES
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_tokens"] == 50 and body["temperature"] == 0.0
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-test"


def test_malformed_json_then_good(fake_openai) -> None:
    fake_openai.push("this is not JSON {")
    fake_openai.push({"x": 5})
    client = make_client(fake_openai)
    assert client.chat_json(MESSAGES, needs_x) == 5
    assert fake_openai.count == 2
    assert client.stats.retries == 1 and client.stats.requests == 2


def test_reply_failing_validation_is_retried(fake_openai) -> None:
    fake_openai.push({"y": 1})
    fake_openai.push({"x": 7})
    assert make_client(fake_openai).chat_json(MESSAGES, needs_x) == 7
    assert fake_openai.count == 2


def test_429_then_success_honours_retry_after(fake_openai) -> None:
    fake_openai.push(status=429, Retry_After="0")
    fake_openai.push({"x": 1})
    client = make_client(fake_openai, backoff_s=5.0, max_backoff_s=5.0)  # Retry-After: 0 overrides the 5 s backoff
    assert client.chat_json(MESSAGES, needs_x) == 1
    assert fake_openai.count == 2


def test_server_errors_exhaust_retries(fake_openai) -> None:
    fake_openai.always(status=503)
    client = make_client(fake_openai, max_retries=3)
    with pytest.raises(LLMError, match="gave up after 4 attempts") as raised:
        client.chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "http"
    assert fake_openai.count == 4
    assert client.stats.failures == 1


def test_client_errors_are_not_retried(fake_openai) -> None:
    fake_openai.always(status=401)
    with pytest.raises(LLMError, match="HTTP 401") as raised:
        make_client(fake_openai).chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "http"
    assert fake_openai.count == 1


def test_timeout_then_success(fake_openai) -> None:
    fake_openai.push({"x": 0}, delay_s=1.0)
    fake_openai.push({"x": 9})
    client = make_client(fake_openai, timeout_s=0.3)
    assert client.chat_json(MESSAGES, needs_x) == 9
    assert fake_openai.count == 2


def test_timeouts_exhaust_retries(fake_openai) -> None:
    fake_openai.always({"x": 0}, delay_s=0.6)
    client = make_client(fake_openai, timeout_s=0.2, max_retries=1)
    with pytest.raises(LLMError) as raised:
        client.chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "timeout"
    assert fake_openai.count == 2


def test_cache_hit_makes_no_request(fake_openai, tmp_path: Path) -> None:
    fake_openai.always({"x": 11})
    first = make_client(fake_openai, cache_dir=tmp_path / "cache")
    assert first.chat_json(MESSAGES, needs_x) == 11
    assert first.chat_json(MESSAGES, needs_x) == 11
    assert fake_openai.count == 1 and first.stats.cache_hits == 1
    # A new client (a rerun) with the same cache makes no request either.
    second = make_client(fake_openai, cache_dir=tmp_path / "cache")
    assert second.chat_json(MESSAGES, needs_x) == 11
    assert fake_openai.count == 1
    # The key includes the model and the namespace: either change is a miss.
    assert make_client(fake_openai, cache_dir=tmp_path / "cache", model="other").chat_json(MESSAGES, needs_x) == 11
    assert second.chat_json(MESSAGES, needs_x, namespace="segmenter") == 11
    assert fake_openai.count == 3


def test_failed_replies_are_not_cached(fake_openai, tmp_path: Path) -> None:
    fake_openai.always("not json")
    client = make_client(fake_openai, cache_dir=tmp_path / "cache", max_retries=0)
    with pytest.raises(LLMError):
        client.chat_json(MESSAGES, needs_x)
    assert len(JsonCache(tmp_path / "cache")) == 0


def test_missing_api_key_for_openai_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        ChatClient()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert ChatClient().api_key == "sk-env"


def test_backoff_doubles_and_is_capped() -> None:
    client = ChatClient(base_url="http://127.0.0.1:1/v1", backoff_s=1.0, max_backoff_s=3.0)
    assert 1.0 <= client._delay(0, None) <= 1.25
    assert 2.0 <= client._delay(1, None) <= 2.5
    assert 3.0 <= client._delay(5, None) <= 3.75  # capped at 3 s before jitter
    assert client._delay(0, "2") == 2.0


def test_parse_json_reply_accepts_fences() -> None:
    assert parse_json_reply('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_reply(' {"a": [1, 2]} ') == {"a": [1, 2]}
    with pytest.raises(InvalidReply):
        parse_json_reply("{'a': 1}")


def test_json_cache_round_trip_and_corruption(tmp_path: Path) -> None:
    cache = JsonCache(tmp_path)
    key = request_key("m", {"messages": [1]})
    assert cache.get(key) is None
    cache.put(key, {"v": [1, 2]})
    assert cache.get(key) == {"v": [1, 2]}
    assert len(cache) == 1
    assert not list(tmp_path.rglob("*.tmp"))  # the temporary file was renamed, not left behind
    path = next(tmp_path.rglob(f"{key}.json"))
    path.write_text("{truncated", encoding="utf-8")
    assert cache.get(key) is None
    assert request_key("m", {"a": 1, "b": 2}) == request_key("m", json.loads('{"b": 2, "a": 1}'))
    assert request_key("m", {"a": 1}) != request_key("n", {"a": 1})
