"""The ``llm`` segmenter: an LLM rewrites each raw answer into Rq / Mt / Ra parts (the paper's data preparation).

``LLMDecomposer.decompose(question, answer)`` asks an OpenAI-compatible model for a JSON object with one text per
segment and validates it: every segment present and non-empty, and, when the original answer states a final
answer (``\\boxed{}``, ``####``, "the answer is …"), the Ra part must state an equivalent one (so a rewrite cannot
silently change or fix the result: a dispreferred answer keeps its wrong result). A decomposition that fails after
the client's retries returns None and is counted.

``LLMSegmenter`` plugs this into the data pipeline: the response text is ``separator.join(parts)`` in the configured
segment order, and each span is computed from that joined string, so text and spans cannot drift apart. A failed
decomposition raises ``SegmentationError`` (the pipeline's ``on_failure`` policy then skips and counts the pair).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hipo.data.errors import RowLocation, SegmentationError
from hipo.data.schema import DEFAULT_SEGMENTS, SegmentedResponse, Span
from hipo.data.segmenters.base import SIDES, Segmenter, require_text
from hipo.eval.extraction import extract_answer
from hipo.eval.grading import answers_match
from hipo.llm.client import ChatClient, InvalidReply, LLMError

log = logging.getLogger(__name__)

SEGMENT_INSTRUCTIONS: dict[str, str] = {
    "Rq": "Refined Query: restate the question precisely (givens, unknown, constraints) without solving it.",
    "Mt": "Meta-thinking: the reasoning of the original answer: its plan and its steps and computations, in order.",
    "Ra": "Refined Answer: a short conclusion that states the original answer's final result explicitly.",
}

SYSTEM_PROMPT_TEMPLATE = (
    "You restructure an existing answer to a math question into {count} consecutive parts: {names}.\n"
    "{descriptions}\n"
    "Rules: keep the original content and its final result exactly, INCLUDING any mistakes; do not fix errors, do "
    "not add new steps or facts, do not drop steps. Write each part as plain text (LaTeX allowed). If the original "
    "states a final answer, the last part must state the same final answer.\n"
    "Reply with a JSON object only: {schema}"
)


@dataclass
class DecompositionStats:
    """Counts of one decomposer: calls, successes, and failures by cause (request vs validation)."""

    calls: int = 0
    succeeded: int = 0
    failed_request: int = 0
    failed_validation: int = 0

    @property
    def failed(self) -> int:
        """All failed decompositions."""
        return self.failed_request + self.failed_validation


class LLMDecomposer:
    """Decomposes answers into named segments with an LLM (JSON reply, validated, cached by the client).

    Args:
        client: the chat client (model, retries, its own ``cache_dir``).
        segments: ordered segment names; descriptions exist for Rq, Mt and Ra, other names get a generic one.
        check_final_answer: require Ra's final answer to match the original's when the original states one.
    """

    def __init__(
        self, client: ChatClient, segments: Sequence[str] = DEFAULT_SEGMENTS, check_final_answer: bool = True
    ) -> None:
        self.client = client
        self.segments = tuple(segments)
        if not self.segments or len(set(self.segments)) != len(self.segments):
            raise ValueError(f"segments must be non-empty and distinct, got {list(segments)}")
        self.check_final_answer = check_final_answer
        self.stats = DecompositionStats()
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, str], dict[str, str] | None] = {}

    def system_prompt(self) -> str:
        """The instructions sent as the system message."""
        descriptions = "\n".join(
            f"- {name}: {SEGMENT_INSTRUCTIONS.get(name, f'the {name} part of the answer.')}" for name in self.segments
        )
        schema = "{" + ", ".join(f'"{name}": "<text>"' for name in self.segments) + "}"
        return SYSTEM_PROMPT_TEMPLATE.format(
            count=len(self.segments), names=", ".join(self.segments), descriptions=descriptions, schema=schema
        )

    def messages(self, question: str, answer: str) -> list[dict[str, str]]:
        """The chat messages for one decomposition."""
        user = f"## Question\n{question}\n\n## Original answer\n{answer}"
        return [{"role": "system", "content": self.system_prompt()}, {"role": "user", "content": user}]

    def validate(self, reply: Any, answer: str) -> dict[str, str]:
        """The segment texts of a parsed reply; raises ``InvalidReply`` when it breaks the rules above."""
        if not isinstance(reply, dict):
            raise InvalidReply(f"reply must be a JSON object, got {type(reply).__name__}")
        by_lower = {str(key).strip().lower(): value for key, value in reply.items()}
        parts: dict[str, str] = {}
        for name in self.segments:
            value = by_lower.get(name.lower())
            if not isinstance(value, str) or not value.strip():
                raise InvalidReply(f"segment {name!r} is missing or empty")
            parts[name] = value.strip()
        if self.check_final_answer:
            original = extract_answer(answer, last_number_fallback=False)
            if original is not None:
                stated = extract_answer(parts[self.segments[-1]])
                if stated is None or not answers_match(stated, original):
                    raise InvalidReply(f"final answer changed: original {original!r}, rewritten {stated!r}")
        return parts

    def decompose(self, question: str, answer: str) -> dict[str, str] | None:
        """``{segment: text}`` in segment order, or None when the decomposition failed (counted in ``stats``)."""
        key = (question, answer)
        with self._lock:
            if key in self._memo:
                return self._memo[key]
            self.stats.calls += 1
        result: dict[str, str] | None = None
        try:
            result = self.client.chat_json(
                self.messages(question, answer), lambda reply: self.validate(reply, answer), namespace="decompose"
            )
        except LLMError as error:
            log.warning("decomposition failed (%s): %s", error.kind, error)
            with self._lock:
                if error.kind == "invalid":
                    self.stats.failed_validation += 1
                else:
                    self.stats.failed_request += 1
        else:
            with self._lock:
                self.stats.succeeded += 1
        with self._lock:
            self._memo[key] = result
        return result

    def decompose_many(self, pairs: Iterable[tuple[str, str]], concurrency: int = 8) -> list[dict[str, str] | None]:
        """``decompose`` over (question, answer) pairs with at most ``concurrency`` requests in flight."""
        items = list(pairs)
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
            return list(pool.map(lambda pair: self.decompose(*pair), items))


def join_parts(parts: Mapping[str, str], segments: Sequence[str], separator: str) -> SegmentedResponse:
    """``separator.join`` of the parts in ``segments`` order, with each span located in the joined text."""
    pieces: list[str] = []
    spans: list[Span] = []
    position = 0
    for index, name in enumerate(segments):
        if index:
            pieces.append(separator)
            position += len(separator)
        text = parts[name]
        spans.append(Span(name, position, position + len(text)))
        pieces.append(text)
        position += len(text)
    return SegmentedResponse("".join(pieces), tuple(spans))


class LLMSegmenter(Segmenter):
    """Segmenter whose responses are LLM rewrites of the raw ``chosen`` / ``rejected`` answers.

    Args:
        decomposer: the LLM decomposer (its segments are this segmenter's segments).
        chosen_field: the row's column with the preferred answer.
        rejected_field: the row's column with the dispreferred answer.
        separator: text between consecutive parts (outside every span).
        on_failure, fallback_segment, prompt_field: see :class:`~hipo.data.segmenters.base.Segmenter`.
    """

    def __init__(
        self,
        decomposer: LLMDecomposer,
        chosen_field: str = "chosen",
        rejected_field: str = "rejected",
        separator: str = "\n\n",
        on_failure: str = "skip",
        fallback_segment: str | None = "Mt",
        prompt_field: str = "question",
    ) -> None:
        super().__init__(decomposer.segments, on_failure, fallback_segment, prompt_field)
        self.decomposer = decomposer
        self.fields = {"chosen": chosen_field, "rejected": rejected_field}
        self.separator = separator

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "fields": self.fields,
            "separator": self.separator,
            "model": self.decomposer.client.model,
            "base_url": self.decomposer.client.base_url,
            "check_final_answer": self.decomposer.check_final_answer,
        }

    def response_text(self, row: Mapping[str, Any], side: str, location: RowLocation) -> str:
        return require_text(row, self.fields[side], location)

    def segment_response(self, row: Mapping[str, Any], side: str, location: RowLocation) -> SegmentedResponse:
        question = self.prompt(row, location)
        parts = self.decomposer.decompose(question, self.response_text(row, side, location))
        if parts is None:
            raise SegmentationError("the LLM decomposition failed or did not validate", location, self.fields[side])
        return join_parts(parts, self.segments, self.separator)

    def prefetch(self, rows: Iterable[tuple[RowLocation, Mapping[str, Any]]], concurrency: int = 8) -> None:
        """Decomposes every response of ``rows`` in parallel ahead of ``segment_rows`` (results are memoized)."""
        pairs: list[tuple[str, str]] = []
        for location, row in rows:
            question = self.prompt(row, location)
            pairs.extend((question, self.response_text(row, side, location)) for side in SIDES)
        self.decomposer.decompose_many(pairs, concurrency=concurrency)
