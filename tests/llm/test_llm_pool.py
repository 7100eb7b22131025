"""RequestPool and RateLimiter: bounded concurrency, request order, the requests-per-minute cap, stats, progress."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from hipo.llm.client import ChatClient, ChatResult, InvalidReply, LLMError
from hipo.llm.pool import PoolStats, RateLimiter, RequestPool


def echo_n(reply: Any) -> int:
    """A validator: the reply must be an object with an integer ``n``."""
    if not isinstance(reply, dict) or not isinstance(reply.get("n"), int):
        raise InvalidReply(f"no integer n in {reply!r}")
    return reply["n"]


def answer_n(server: Any, delay_s: float = 0.0) -> Any:
    """A server default: ``{"n": N}`` for the message ``item N``; status 400 for ``item fail``; tokens = N."""

    def respond(body: dict[str, Any]) -> Any:
        text = body["messages"][-1]["content"]
        if text.endswith("fail"):
            return server.reply(status=400)
        n = int(text.rsplit(" ", 1)[1])
        return server.reply({"n": n}, delay_s=delay_s, tokens=n)

    return respond


def ask(client: ChatClient, item: str) -> ChatResult[int]:
    return client.complete_json([{"role": "user", "content": f"item {item}"}], echo_n)


@pytest.mark.slow  # delayed replies
def test_pool_keeps_order_bounds_concurrency_and_counts(fake_openai, tmp_path: Path, capsys) -> None:
    fake_openai.default = answer_n(fake_openai, delay_s=0.2)
    client = ChatClient(base_url=fake_openai.url, model="m", max_retries=0, cache_dir=tmp_path)
    ask(client, "1")
    ask(client, "2")  # these two are in the reply cache now
    capsys.readouterr()
    items = ["1", "2", "3", "fail", "4", "5", "6"]
    stats = PoolStats()
    outcomes = RequestPool(concurrency=3, description="test").run(lambda item: ask(client, item), items, stats)
    assert [o.value if isinstance(o, ChatResult) else "error" for o in outcomes] == [1, 2, 3, "error", 4, 5, 6]
    assert isinstance(outcomes[3], LLMError) and outcomes[3].kind == "http"
    assert fake_openai.max_in_flight == 3
    assert (stats.done, stats.failed, stats.cached, stats.tokens) == (6, 1, 2, 3 + 4 + 5 + 6)
    assert stats.failures == {"http": 1} and stats.requested == 5
    assert "done=6 failed=1 cached=2 tokens=18" in capsys.readouterr().err  # the progress bar's last postfix
    assert stats.summary("test", 1.25) == "test: 6 done (2 cached), 1 failed (http: 1), 18 tokens in 1.2 s"


def test_unexpected_errors_propagate_and_queued_tasks_are_dropped() -> None:
    started: list[int] = []

    def task(i: int) -> Any:
        started.append(i)
        if i == 0:
            raise KeyError("a bug, not a request failure")
        time.sleep(0.05)
        return ChatResult(i)

    with pytest.raises(KeyError):
        RequestPool(concurrency=1, progress=False, failures=(LLMError,)).run(task, list(range(50)))
    assert len(started) < 50


@pytest.mark.slow  # waits between request starts
def test_rate_limiter_spaces_request_starts(fake_openai, tmp_path: Path) -> None:
    fake_openai.default = answer_n(fake_openai)
    client = ChatClient(base_url=fake_openai.url, model="m", requests_per_minute=300, cache_dir=tmp_path)  # 0.2 s
    items = [str(i) for i in range(5)]
    outcomes = RequestPool(concurrency=5, progress=False).run(lambda item: ask(client, item), items)
    assert all(isinstance(o, ChatResult) for o in outcomes)
    gaps = [b - a for a, b in zip(fake_openai.times, fake_openai.times[1:], strict=False)]
    assert len(gaps) == 4 and min(gaps) >= 0.18, gaps  # 5 threads ready at once, yet one start per 0.2 s
    started = time.monotonic()
    RequestPool(concurrency=5, progress=False).run(lambda item: ask(client, item), items)
    assert fake_openai.count == 5 and time.monotonic() - started < 0.15  # cache hits take no rate-limit slot


def test_rate_limiter_alone() -> None:
    limiter = RateLimiter(requests_per_minute=1200)  # 50 ms apart
    started = time.monotonic()
    for _ in range(4):
        limiter.wait()
    assert 0.14 <= time.monotonic() - started < 0.5
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RequestPool(concurrency=0)


@pytest.mark.slow  # a judged batch against the fake server
def test_judge_many_reports_stats_and_a_summary(fake_openai, tmp_path: Path, caplog) -> None:
    from hipo.eval.judge import DIMENSION_KEYS, Judge, JudgeRequest

    def respond(body: dict[str, Any]) -> Any:
        if "FAIL" in body["messages"][1]["content"]:
            return fake_openai.reply(status=400)
        reply = {"scores": dict.fromkeys(DIMENSION_KEYS, 6), "verbosity": 5, "comment": ""}
        return fake_openai.reply(reply, delay_s=0.4, tokens=100)

    fake_openai.default = respond
    client = ChatClient(base_url=fake_openai.url, model="judge", max_retries=0, cache_dir=tmp_path)
    requests = [JudgeRequest(f"q{i}", "FAIL" if i == 3 else f"answer {i}") for i in range(6)]
    Judge(client, progress=False).judge_many(requests[:2])  # cached for the next judge
    caplog.set_level(logging.INFO, logger="hipo.eval.judge")
    judge = Judge(client, concurrency=16, progress=False)
    judgments = judge.judge_many(requests)
    assert [j.ok for j in judgments] == [True, True, True, False, True, True]
    assert "HTTP 400" in (judgments[3].error or "")
    assert (judge.stats.done, judge.stats.failed, judge.stats.cached, judge.stats.tokens) == (5, 1, 2, 300)
    assert any("judge (6 solutions): 5 done (2 cached), 1 failed" in r.getMessage() for r in caplog.records)
    assert fake_openai.max_in_flight >= 3  # the four uncached requests overlapped
