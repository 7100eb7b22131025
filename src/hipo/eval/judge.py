"""The rubric judge: an LLM scores a solution on 11 dimensions (0-10) plus verbosity and a comment.

Blind by default: the prompt holds the problem, the reference answer (configurable) and the solution, never the
method that produced it nor the grader's verdict. Replies are validated against the schema below; the client
asks again for malformed ones. A judgment that still fails is recorded with ``ok=False`` and its error: it never
stops an evaluation. ``Judge.judge_many`` runs over a :class:`~hipo.llm.pool.RequestPool` (bounded concurrency,
progress bar, done / failed / cached / tokens counts); the client's ``requests_per_minute`` caps the request rate.

Reply schema (JSON object)::

    {"scores": {"logical_flow": 0-10, ..., "error_robustness": 0-10}, "verbosity": 0-10, "comment": "..."}
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hipo.llm.client import ChatClient, ChatResult, InvalidReply
from hipo.llm.pool import PoolStats, RequestPool

log = logging.getLogger(__name__)

RUBRIC: dict[str, str] = {
    "Logical Flow": "each step follows from the previous ones; no jumps or circular reasoning",
    "Structural Organization": "the solution is laid out in a clear order (setup, steps, conclusion)",
    "Consistency": "no contradictions between steps, notation or intermediate values",
    "Factual Correctness": "stated facts, formulas and computations are correct",
    "Domain Knowledge Application": "the right mathematical concepts and theorems are chosen and applied properly",
    "Reasoning Validity": "every inference is valid; conclusions are justified",
    "Final Answer Correctness": "the final answer is correct (compare with the reference answer when given)",
    "Strategy Usefulness": "the chosen approach is appropriate and efficient for the problem",
    "Progress Toward Solution": "how far the work gets toward a complete solution",
    "Partial Success Recognition": "credit for correct sub-results even if the final answer is wrong",
    "Error Robustness": "mistakes are avoided, noticed or corrected rather than propagated",
}
RUBRIC_DIMENSIONS: tuple[str, ...] = tuple(RUBRIC)


def snake_case(name: str) -> str:
    """``"Final Answer Correctness"`` -> ``"final_answer_correctness"`` (the metric-name form)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


DIMENSION_KEYS: tuple[str, ...] = tuple(snake_case(name) for name in RUBRIC_DIMENSIONS)

SYSTEM_PROMPT = (
    "You are a strict, impartial grader of mathematical solutions. Score the solution on each rubric dimension "
    "with an integer from 0 (very poor) to 10 (excellent), judging only the text shown. Also rate verbosity from "
    "0 (far too terse) through 5 (appropriate) to 10 (far too verbose), and add a one or two sentence comment.\n\n"
    "Rubric:\n"
    + "\n".join(f"- {key} ({name}): {text}" for key, (name, text) in zip(DIMENSION_KEYS, RUBRIC.items(), strict=True))
    + "\n\nReply with a JSON object only, exactly in this form:\n"
    + '{"scores": {'
    + ", ".join(f'"{key}": <0-10>' for key in DIMENSION_KEYS)
    + '}, "verbosity": <0-10>, "comment": "<text>"}'
)


@dataclass(frozen=True)
class JudgeRequest:
    """What the judge sees: the problem, the solution and optionally the reference answer.

    ``method`` and ``verdict`` are shown only by a non-blind judge.
    """

    question: str
    response: str
    reference_answer: str | None = None
    method: str | None = None
    verdict: bool | None = None


@dataclass
class Judgment:
    """One judge result: ``ok`` with scores (snake-case keys), verbosity and comment, or failed with ``error``."""

    ok: bool
    scores: dict[str, int] = field(default_factory=dict)
    verbosity: int | None = None
    comment: str = ""
    error: str | None = None

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict for per-sample records."""
        return {
            "ok": self.ok,
            "scores": self.scores,
            "verbosity": self.verbosity,
            "comment": self.comment,
            "error": self.error,
        }


def build_messages(request: JudgeRequest, blind: bool = True, include_reference: bool = True) -> list[dict[str, str]]:
    """The chat messages for one judgment (system rubric + user content)."""
    parts = [f"## Problem\n{request.question}"]
    if include_reference and request.reference_answer is not None:
        parts.append(f"## Reference final answer\n{request.reference_answer}")
    if not blind:
        if request.method is not None:
            parts.append(f"## Method\n{request.method}")
        if request.verdict is not None:
            parts.append(f"## Automatic grader verdict\n{'correct' if request.verdict else 'incorrect'}")
    parts.append(f"## Solution to grade\n{request.response}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def _score(value: Any, where: str) -> int:
    """An integer 0-10 (an integral float is accepted); raises ``InvalidReply`` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidReply(f"{where} must be a number from 0 to 10, got {value!r}")
    if value != int(value) or not 0 <= value <= 10:
        raise InvalidReply(f"{where} must be an integer from 0 to 10, got {value!r}")
    return int(value)


def validate_reply(reply: Any) -> Judgment:
    """Checks a parsed reply against the schema; returns an ``ok`` Judgment or raises ``InvalidReply``.

    Score keys are matched after snake-casing (``"Logical Flow"`` is accepted for ``logical_flow``); every
    dimension must be present; unknown dimensions are rejected.
    """
    if not isinstance(reply, dict):
        raise InvalidReply(f"reply must be a JSON object, got {type(reply).__name__}")
    raw_scores = reply.get("scores")
    if not isinstance(raw_scores, dict):
        raise InvalidReply("reply has no 'scores' object")
    scores = {snake_case(str(key)): value for key, value in raw_scores.items()}
    missing = [key for key in DIMENSION_KEYS if key not in scores]
    unknown = [key for key in scores if key not in DIMENSION_KEYS]
    if missing or unknown:
        raise InvalidReply(f"reply scores: missing {missing}, unknown {unknown}")
    comment = reply.get("comment", "")
    if not isinstance(comment, str):
        raise InvalidReply(f"comment must be a string, got {comment!r}")
    return Judgment(
        ok=True,
        scores={key: _score(scores[key], f"scores.{key}") for key in DIMENSION_KEYS},
        verbosity=_score(reply.get("verbosity"), "verbosity"),
        comment=comment.strip(),
    )


class Judge:
    """Scores solutions with an LLM, many at once, never raising for a single failed judgment.

    Args:
        client: the chat client (model, retries, rate limit, reply cache).
        concurrency: at most this many requests in flight in :meth:`judge_many`.
        blind: hide the method name and the grader's verdict (default True).
        include_reference: show the reference final answer to the judge.
        progress: show a progress bar in :meth:`judge_many`.

    Attributes:
        stats: counts over every judgment so far (done / failed / cached / tokens).
    """

    def __init__(
        self,
        client: ChatClient,
        concurrency: int = 16,
        blind: bool = True,
        include_reference: bool = True,
        progress: bool = True,
    ) -> None:
        self.client = client
        self.pool = RequestPool(concurrency, progress, "judge", failures=(Exception,))  # validates concurrency
        self.blind = blind
        self.include_reference = include_reference
        self.stats = PoolStats()

    def _request(self, request: JudgeRequest) -> ChatResult[Judgment]:
        """One judgment from the cache or the server; raises on failure."""
        messages = build_messages(request, blind=self.blind, include_reference=self.include_reference)
        return self.client.complete_json(messages, validate_reply, namespace="judge")

    def judge(self, request: JudgeRequest) -> Judgment:
        """One judgment; any failure is returned as ``Judgment(ok=False, error=...)``."""
        try:
            outcome: ChatResult[Judgment] | BaseException = self._request(request)
        except Exception as error:  # recorded, never raised: one bad judgment must not stop an evaluation
            outcome = error
        self.stats.record(outcome)
        return _judgment(outcome)

    def judge_many(self, requests: Sequence[JudgeRequest]) -> list[Judgment]:
        """Judgments in request order, at most ``concurrency`` requests in flight; logs one summary line."""
        stats = PoolStats()
        started = time.monotonic()
        judgments = [_judgment(outcome) for outcome in self.pool.run(self._request, list(requests), stats)]
        self.stats.add(stats)
        if requests:
            log.info(stats.summary(f"judge ({len(requests)} solutions)", time.monotonic() - started))
        return judgments


def _judgment(outcome: ChatResult[Judgment] | BaseException) -> Judgment:
    """The judgment of a result, or a failed one that records the exception."""
    if isinstance(outcome, BaseException):
        log.warning("judgment failed: %s", outcome)
        return Judgment(ok=False, error=f"{type(outcome).__name__}: {outcome}")
    return outcome.value


def judge_means(judgments: Sequence[Judgment]) -> dict[str, float]:
    """Mean score per dimension (snake-case keys) and ``verbosity`` over the successful judgments ({} if none)."""
    good = [j for j in judgments if j.ok]
    if not good:
        return {}
    means = {key: sum(j.scores[key] for j in good) / len(good) for key in DIMENSION_KEYS}
    means["verbosity"] = sum(j.verbosity or 0 for j in good) / len(good)
    return means
