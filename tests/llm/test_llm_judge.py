"""The rubric judge against the fake server: blind prompts, schema validation, retries, failures, cache, concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hipo.eval.judge import (
    DIMENSION_KEYS,
    RUBRIC_DIMENSIONS,
    Judge,
    JudgeRequest,
    Judgment,
    build_messages,
    judge_means,
    snake_case,
    validate_reply,
)
from hipo.llm.client import ChatClient, InvalidReply

REQUEST = JudgeRequest(
    question="What is 2+3?", response="2+3=5, so \\boxed{5}.", reference_answer="5", method="hipo-learned", verdict=True
)


def reply(score: int = 7, verbosity: int = 5, comment: str = "fine") -> dict[str, Any]:
    return {"scores": dict.fromkeys(DIMENSION_KEYS, score), "verbosity": verbosity, "comment": comment}


def make_judge(server: Any, cache_dir: Path | None = None, timeout_s: float = 5.0, **kwargs: Any) -> Judge:
    """A judge against ``server``; the timeout is generous (a loaded CI machine) unless a test times out."""
    client = ChatClient(
        base_url=server.url, model="fake-judge", timeout_s=timeout_s, max_retries=2, cache_dir=cache_dir
    )
    return Judge(client, **kwargs)


def test_rubric_has_the_papers_eleven_dimensions() -> None:
    assert len(RUBRIC_DIMENSIONS) == 11
    assert snake_case("Final Answer Correctness") == "final_answer_correctness"
    assert DIMENSION_KEYS[0] == "logical_flow" and DIMENSION_KEYS[-1] == "error_robustness"


def test_blind_prompt_hides_method_and_verdict() -> None:
    blind = build_messages(REQUEST)[1]["content"]
    assert "hipo-learned" not in blind and "grader verdict" not in blind
    assert "What is 2+3?" in blind and "\\boxed{5}" in blind and "Reference final answer\n5" in blind
    open_prompt = build_messages(REQUEST, blind=False)[1]["content"]
    assert "hipo-learned" in open_prompt and "verdict\ncorrect" in open_prompt
    assert "Reference" not in build_messages(REQUEST, include_reference=False)[1]["content"]


def test_good_reply(fake_openai) -> None:
    fake_openai.push(reply(score=8, verbosity=4, comment="clear"))
    judgment = make_judge(fake_openai).judge(REQUEST)
    assert judgment.ok and judgment.error is None
    assert judgment.scores == dict.fromkeys(DIMENSION_KEYS, 8)
    assert (judgment.verbosity, judgment.comment) == (4, "clear")
    system = fake_openai.requests[0]["messages"][0]["content"]
    assert all(key in system for key in DIMENSION_KEYS)


def test_malformed_then_good(fake_openai) -> None:
    fake_openai.push("{'scores': nope")
    fake_openai.push(reply(score=6))
    judgment = make_judge(fake_openai).judge(REQUEST)
    assert judgment.ok and judgment.scores["logical_flow"] == 6
    assert fake_openai.count == 2


def test_schema_violation_then_good(fake_openai) -> None:
    incomplete = reply()
    del incomplete["scores"]["consistency"]
    fake_openai.push(incomplete)
    fake_openai.push(reply(score=11))  # out of range
    fake_openai.push(reply(score=3))
    assert make_judge(fake_openai).judge(REQUEST).scores["consistency"] == 3
    assert fake_openai.count == 3


def test_429_then_success(fake_openai) -> None:
    fake_openai.push(status=429)
    fake_openai.push(reply(score=9))
    assert make_judge(fake_openai).judge(REQUEST).scores["reasoning_validity"] == 9
    assert fake_openai.count == 2


@pytest.mark.slow  # waits for request timeouts
def test_timeout_then_failure_is_recorded_not_raised(fake_openai) -> None:
    fake_openai.always(reply(), delay_s=1.0)  # every attempt outlives the 0.5 s client timeout
    judgment = make_judge(fake_openai, timeout_s=0.5).judge(REQUEST)
    assert not judgment.ok and judgment.scores == {}
    assert "timeout" in judgment.error
    assert fake_openai.count == 3  # 1 + max_retries


def test_cache_hit_makes_no_request(fake_openai, tmp_path: Path) -> None:
    fake_openai.always(reply(score=5))
    assert make_judge(fake_openai, tmp_path).judge(REQUEST).ok
    again = make_judge(fake_openai, tmp_path).judge(REQUEST)  # a fresh judge, as in a rerun
    assert again.ok and again.scores["logical_flow"] == 5
    assert fake_openai.count == 1


@pytest.mark.slow  # delayed replies
def test_judge_many_keeps_order_limits_concurrency_and_survives_failures(fake_openai) -> None:
    def answer(body: dict[str, Any]) -> Any:
        text = body["messages"][1]["content"]
        if "FAIL" in text:
            return fake_openai.reply(status=400)
        score = int(text.rsplit("score ", 1)[1].split(".")[0])
        return fake_openai.reply(reply(score=score), delay_s=0.1)

    fake_openai.default = answer
    requests = [JudgeRequest(f"q{i}", f"solution with score {i}.") for i in range(6)]
    requests.insert(2, JudgeRequest("q", "FAIL"))
    judgments = make_judge(fake_openai, concurrency=2).judge_many(requests)
    assert [j.ok for j in judgments] == [True, True, False, True, True, True, True]
    assert [j.scores["logical_flow"] for j in judgments if j.ok] == [0, 1, 2, 3, 4, 5]
    assert fake_openai.max_in_flight == 2
    means = judge_means(judgments)
    assert means["logical_flow"] == pytest.approx((0 + 1 + 2 + 3 + 4 + 5) / 6)  # the failed judgment is left out
    assert means["verbosity"] == 5


def test_validate_reply_rules() -> None:
    titled = {"scores": {name: 4 for name in RUBRIC_DIMENSIONS}, "verbosity": 5.0, "comment": " ok "}
    judgment = validate_reply(titled)
    assert judgment.scores["domain_knowledge_application"] == 4 and judgment.verbosity == 5
    assert judgment.comment == "ok"
    bad_replies = [
        [1, 2],
        {"verbosity": 5},
        {**reply(), "verbosity": 11},
        {**reply(), "verbosity": True},
        {**reply(), "comment": 3},
        {"scores": {**reply()["scores"], "style": 5}, "verbosity": 5, "comment": ""},
        {"scores": {**reply()["scores"], "logical_flow": 6.5}, "verbosity": 5, "comment": ""},
    ]
    for bad in bad_replies:
        with pytest.raises(InvalidReply):
            validate_reply(bad)


def test_judge_means_of_nothing() -> None:
    assert judge_means([Judgment(ok=False, error="x")]) == {}
