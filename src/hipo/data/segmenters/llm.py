"""The ``llm`` segmenter: an LLM rewrites each raw answer into Rq / Mt / Ra parts (the paper's data preparation).

``LLMDecomposer.decompose(question, answer)`` asks an OpenAI-compatible model for a JSON object with one text per
segment and validates it: every segment present and non-empty, and, when the original answer states a final
answer (``\\boxed{}``, ``####``, "the answer is …"), the Ra part must state an equivalent one (so a rewrite cannot
silently change or fix the result: a dispreferred answer keeps its wrong result). A decomposition that fails after
the client's retries returns None and is counted. ``decompose_all`` runs many at once over a
:class:`~hipo.llm.pool.RequestPool` (bounded concurrency, progress bar, done / failed / cached / tokens counts).

``LLMSegmenter`` plugs this into the data pipeline: its ``prepare(rows)`` hook decomposes every response of the
dataset concurrently before ``segment_rows`` reads the results back one row at a time. The response text is
``separator.join(parts)`` in the configured segment order, and each span is computed from that joined string, so
text and spans cannot drift apart. A failed decomposition raises ``SegmentationError`` (the pipeline's
``on_failure`` policy then skips and counts the pair, keeps it whole, or stops).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedResponse, Span
from hipo.data.segmenters.base import SIDES, Segmenter, require_text
from hipo.eval.extraction import extract_answer
from hipo.eval.grading import answers_match
from hipo.llm.client import ChatClient, ChatResult, InvalidReply, LLMError
from hipo.llm.pool import PoolStats, RequestPool

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


class LLMDecomposer:
    """Decomposes answers into named segments with an LLM (JSON reply, validated, cached by the client).

    Args:
        client: the chat client (model, retries, rate limit, its own reply ``cache_dir``).
        segments: ordered segment names; descriptions exist for Rq, Mt and Ra, other names get a generic one.
        check_final_answer: require Ra's final answer to match the original's when the original states one.
        concurrency: the most requests in flight in :meth:`decompose_all`.
        progress: show a progress bar in :meth:`decompose_all`.

    Attributes:
        stats: counts over every decomposition so far (done / failed by kind / cached / tokens).
    """

    def __init__(
        self,
        client: ChatClient,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        check_final_answer: bool = True,
        concurrency: int = 16,
        progress: bool = True,
    ) -> None:
        self.client = client
        self.segments = tuple(segments)
        if not self.segments or len(set(self.segments)) != len(self.segments):
            raise ValueError(f"segments must be non-empty and distinct, got {list(segments)}")
        if concurrency <= 0:
            raise ValueError(f"concurrency must be positive, got {concurrency}")
        self.check_final_answer = check_final_answer
        self.concurrency = concurrency
        self.progress = progress
        self.stats = PoolStats()
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
                stated = extract_answer(parts[self.segments[-1]], last_number_fallback=True)
                if stated is None or not answers_match(stated, original):
                    raise InvalidReply(f"final answer changed: original {original!r}, rewritten {stated!r}")
        return parts

    def _request(self, item: tuple[str, str]) -> ChatResult[dict[str, str]]:
        """One decomposition from the cache or the server; raises ``LLMError``."""
        question, answer = item
        messages = self.messages(question, answer)
        return self.client.complete_json(messages, lambda reply: self.validate(reply, answer), namespace="decompose")

    def _remember(self, item: tuple[str, str], outcome: ChatResult[dict[str, str]] | BaseException) -> None:
        """Memoizes an outcome (a failure as None) so that ``decompose`` asks no second time."""
        if isinstance(outcome, BaseException):
            log.warning("decomposition failed (%s): %s", getattr(outcome, "kind", "error"), outcome)
            self._memo[item] = None
        else:
            self._memo[item] = outcome.value

    def decompose(self, question: str, answer: str) -> dict[str, str] | None:
        """``{segment: text}`` in segment order, or None when the decomposition failed (counted in ``stats``)."""
        item = (question, answer)
        if item not in self._memo:
            try:
                outcome: ChatResult[dict[str, str]] | BaseException = self._request(item)
            except LLMError as error:
                outcome = error
            self.stats.record(outcome)
            self._remember(item, outcome)
        return self._memo[item]

    def decompose_all(self, items: Iterable[tuple[str, str]]) -> PoolStats:
        """Decomposes every new (question, answer), ``concurrency`` at a time, for ``decompose`` to read back.

        Each reply is written to the client's reply cache as it arrives, so an interrupted call loses nothing that
        had finished. Logs one summary line.

        Returns:
            The counts of this call (also added to ``stats``).
        """
        todo = list(dict.fromkeys(item for item in items if item not in self._memo))
        stats = PoolStats()
        started = time.monotonic()
        pool = RequestPool(self.concurrency, self.progress, "decompose", failures=(LLMError,))
        for item, outcome in zip(todo, pool.run(self._request, todo, stats), strict=True):
            self._remember(item, outcome)
        self.stats.add(stats)
        log.info(stats.summary(f"decomposition of {len(todo)} responses", time.monotonic() - started))
        return stats


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
            "request": self.request_fingerprint(),
        }

    def request_fingerprint(self) -> str:
        """A hash of what shapes the replies besides the model: instructions and sampling settings."""
        client = self.decomposer.client
        settings = [self.decomposer.system_prompt(), client.temperature, client.max_tokens, client.json_mode]
        return hashlib.sha256(repr(settings).encode("utf-8")).hexdigest()[:16]

    def response_text(self, row: Mapping[str, Any], side: str, location: RowLocation) -> str:
        return require_text(row, self.fields[side], location)

    def segment_response(self, row: Mapping[str, Any], side: str, location: RowLocation) -> SegmentedResponse:
        question = self.prompt(row, location)
        parts = self.decomposer.decompose(question, self.response_text(row, side, location))
        if parts is None:
            raise SegmentationError("the LLM decomposition failed or did not validate", location, self.fields[side])
        return join_parts(parts, self.segments, self.separator)

    def prepare(self, rows: Sequence[tuple[RowLocation, Mapping[str, Any]]]) -> bool:
        """Decomposes both responses of every row concurrently (see ``LLMDecomposer.decompose_all``).

        Rows with an empty response are left out (``segment_rows`` skips them); a malformed row raises its
        ``DataError`` here, before any request is sent.

        Returns:
            False when a request failed (network, server): the rows concerned fail now but a rerun may succeed, so
            the caller should not cache the outcome. Replies that failed validation do not count.
        """
        items: list[tuple[str, str]] = []
        for location, row in rows:
            texts = [self.response_text(row, side, location) for side in SIDES]
            if any(not text.strip() for text in texts):
                continue
            question = self.prompt(row, location)
            items.extend((question, text) for text in texts)
        stats = self.decomposer.decompose_all(items)
        return stats.failed == stats.failures["invalid"]
