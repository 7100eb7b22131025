"""ChatClient over the openai SDK against the fake server: replies, re-asks, 429/5xx/401, timeouts, cache, the key."""

from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from hipo.llm.client import PLACEHOLDER_KEY, ChatClient, InvalidReply, LLMError, parse_json_reply
from hipo.llm.reply_cache import JsonCache, request_key

MESSAGES = [{"role": "user", "content": "Give me a JSON object with x."}]
SECRET = "sk-test-0123456789abcdef-SECRET"


def needs_x(reply: Any) -> int:
    """A validator: the reply must be an object with an integer ``x``."""
    if not isinstance(reply, dict) or not isinstance(reply.get("x"), int):
        raise InvalidReply(f"no integer x in {reply!r}")
    return reply["x"]


def make_client(server: Any, **overrides: Any) -> ChatClient:
    settings: dict[str, Any] = {"base_url": server.url, "model": "fake-judge", "timeout_s": 2.0, "max_retries": 2}
    settings.update(overrides)
    return ChatClient(**settings)


def test_good_reply_request_shape_and_usage(fake_openai) -> None:
    fake_openai.push({"x": 3}, tokens=42)
    client = make_client(fake_openai, temperature=0.0, max_tokens=50)
    result = client.complete_json(MESSAGES, needs_x)
    assert (result.value, result.cached, result.tokens) == (3, False, 42)
    assert fake_openai.count == 1
    body = fake_openai.requests[0]
    assert body["model"] == "fake-judge"
    assert body["messages"] == MESSAGES
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_tokens"] == 50 and body["temperature"] == 0.0
    assert fake_openai.headers[0]["Authorization"] == f"Bearer {PLACEHOLDER_KEY}"  # a local server needs no key


def test_malformed_json_is_asked_again(fake_openai) -> None:
    fake_openai.push("this is not JSON {")
    fake_openai.push('```json\n{"x": 5}\n```', tokens=7)
    result = make_client(fake_openai).complete_json(MESSAGES, needs_x)
    assert result.value == 5 and result.tokens == 17  # both replies' tokens count
    assert fake_openai.count == 2


def test_reply_failing_validation_is_asked_again_a_bounded_number_of_times(fake_openai) -> None:
    fake_openai.push({"y": 1})
    fake_openai.push({"x": 7})
    assert make_client(fake_openai).chat_json(MESSAGES, needs_x) == 7
    fake_openai.always({"y": 1})
    with pytest.raises(LLMError, match="no usable reply in 2 attempts") as raised:
        make_client(fake_openai, max_invalid_retries=1).chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "invalid"
    assert fake_openai.count == 4


@pytest.mark.slow  # waits for Retry-After
def test_429_waits_for_retry_after_then_succeeds(fake_openai) -> None:
    fake_openai.push(status=429, Retry_After="1")
    fake_openai.push({"x": 1})
    started = time.monotonic()
    assert make_client(fake_openai).chat_json(MESSAGES, needs_x) == 1
    assert fake_openai.count == 2
    assert fake_openai.times[1] - fake_openai.times[0] >= 0.95  # the SDK waited the server's Retry-After: 1
    assert time.monotonic() - started < 5


def test_server_errors_exhaust_the_sdk_retries(fake_openai) -> None:
    fake_openai.always(status=503)
    with pytest.raises(LLMError, match="HTTP 503") as raised:
        make_client(fake_openai, max_retries=3).chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "http"
    assert fake_openai.count == 4


def test_client_errors_are_not_retried(fake_openai) -> None:
    fake_openai.always(status=401)
    with pytest.raises(LLMError, match="HTTP 401.*not retried") as raised:
        make_client(fake_openai).chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "http"
    assert fake_openai.count == 1


@pytest.mark.slow  # waits for a request timeout
def test_timeout_then_success(fake_openai) -> None:
    fake_openai.push({"x": 0}, delay_s=2.0)
    fake_openai.push({"x": 9})  # the retry's reply is immediate: 0.6 s leaves room for a loaded machine
    assert make_client(fake_openai, timeout_s=0.6, max_retries=1).chat_json(MESSAGES, needs_x) == 9
    assert fake_openai.count == 2


@pytest.mark.slow  # waits for request timeouts
def test_timeouts_exhaust_retries(fake_openai) -> None:
    fake_openai.always({"x": 0}, delay_s=0.6)
    with pytest.raises(LLMError, match="timeout") as raised:
        make_client(fake_openai, timeout_s=0.2, max_retries=1).chat_json(MESSAGES, needs_x)
    assert raised.value.kind == "timeout"
    assert fake_openai.count == 2


def test_cache_hit_makes_no_request(fake_openai, tmp_path: Path) -> None:
    fake_openai.always({"x": 11})
    first = make_client(fake_openai, cache_dir=tmp_path / "cache")
    assert first.chat_json(MESSAGES, needs_x) == 11
    again = first.complete_json(MESSAGES, needs_x)
    assert (again.value, again.cached, again.tokens) == (11, True, 0)
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
    client = make_client(fake_openai, cache_dir=tmp_path / "cache", max_invalid_retries=0)
    with pytest.raises(LLMError):
        client.chat_json(MESSAGES, needs_x)
    assert len(JsonCache(tmp_path / "cache")) == 0


def test_key_comes_from_the_named_variable_and_is_written_nowhere(
    fake_openai, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MY_LLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    fake_openai.push("not json")
    fake_openai.push({"x": 4})
    fake_openai.push(status=401)
    client = make_client(fake_openai, api_key_env="MY_LLM_KEY", cache_dir=tmp_path / "cache", max_retries=0)
    assert client.chat_json(MESSAGES, needs_x) == 4
    with pytest.raises(LLMError) as raised:
        client.chat_json([{"role": "user", "content": "another"}], needs_x)
    assert [headers["Authorization"] for headers in fake_openai.headers] == [f"Bearer {SECRET}"] * 3
    written = [path.read_text(encoding="utf-8") for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert written and not any(SECRET in text for text in written)
    assert SECRET not in repr(client) and SECRET not in str(vars(client).get("api_key", ""))
    assert SECRET not in str(raised.value)
    assert not any(SECRET in record.getMessage() for record in caplog.records)
    assert SECRET.encode() not in pickle.dumps(client)  # pickling keeps settings only; the key is read again
    assert pickle.loads(pickle.dumps(client)).chat_json(MESSAGES, needs_x) == 4  # from the reply cache
    with pytest.raises(TypeError):
        ChatClient(base_url=fake_openai.url, api_key=SECRET)  # type: ignore[call-arg]  # no such field any more


def test_missing_api_key_for_openai_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        ChatClient()
    with pytest.raises(ValueError, match="MY_LLM_KEY"):
        ChatClient(api_key_env="MY_LLM_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert SECRET not in repr(ChatClient())


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
