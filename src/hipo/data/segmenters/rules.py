"""Heuristic segmenter for raw (unstructured) math answers.

The response is cut into units: paragraphs (split at blank lines) when there are at least ``min_paragraphs`` of
them, otherwise sentences/lines (split after ``.``, ``!`` or ``?`` followed by whitespace, and at line breaks;
so ``3.5`` never splits, while an abbreviation such as ``e.g.`` may). Then:

* **Ra** (refined answer) is the LAST unit among the final ``answer_window`` units that contains an answer marker
  (``\\boxed{``, ``the answer is``, ``final answer``, ``####``, ``answer:``); failing that, the last unit among them
  that opens with a conclusion word (``Therefore``, ``Thus``, ``Hence``, ``So``, ``In conclusion``, ``Finally``).
  Ra runs from that unit to the end of the response. No such unit: SegmentationError.
* **Rq** (refined query) is the FIRST unit when it restates or clarifies the question: it opens with a phrase
  like ``We need/want/are asked/have to``, ``Let``, ``Given``, ``Suppose``, ``To find``, ``The problem/question``,
  or at least ``overlap`` of its content words (alphabetic, 4+ letters) occur in the prompt. Otherwise Rq is an
  empty span at the start of Mt (or SegmentationError when ``require_query`` is set).
* **Mt** (meta-thinking) is everything between Rq and Ra. Empty: SegmentationError.

Spans are stripped of surrounding whitespace and can never overlap (Rq ends before Mt starts, Mt before Ra).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedResponse, Span
from hipo.data.segmenters.base import Segmenter, require_text, strip_span

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*")
_ANSWER_MARKER = re.compile(r"\\boxed\{|\bthe (?:final )?answer is\b|\bfinal answer\b|####|\banswer\s*:", re.I)
_CONCLUSION = re.compile(r"^\W*(?:therefore|thus|hence|so|in conclusion|finally|consequently)\b", re.I)
_RESTATEMENT = re.compile(
    r"^\W*(?:(?:we|i)\s+(?:need|want|have|are asked|must|are given|are looking)|let\b|given\b|suppose\b|assume\b"
    r"|to (?:find|solve|compute|determine|show|prove)\b|the (?:problem|question|task)\b|we are\b|find\b)",
    re.I,
)
_WORD = re.compile(r"[A-Za-z]{4,}")


def split_units(text: str, min_paragraphs: int = 3) -> list[tuple[int, int]]:
    """Character ranges of the paragraphs (or, with fewer than ``min_paragraphs``, sentences) of ``text``."""
    for pattern in (_PARAGRAPH_BREAK, _SENTENCE_BREAK):
        units, start = [], 0
        for match in pattern.finditer(text):
            if text[start : match.start()].strip():
                units.append((start, match.start()))
            start = match.end()
        if text[start:].strip():
            units.append((start, len(text)))
        if pattern is _SENTENCE_BREAK or len(units) >= min_paragraphs:
            return units
    raise AssertionError("unreachable")


class RulesSegmenter(Segmenter):
    """Rq/Mt/Ra by heuristics over ``chosen_field`` / ``rejected_field`` (see the module docstring).

    Args:
        segments: exactly three names, in the roles (query, thinking, answer).
        answer_window: how many final units may hold the answer.
        min_paragraphs: below this many paragraphs, units are sentences.
        overlap: share of the first unit's content words found in the prompt that makes it a restatement.
        require_query: fail when no restatement is found (default: empty Rq span).
        chosen_field, rejected_field: the response columns.
        on_failure, fallback_segment, prompt_field: see :class:`Segmenter`.
    """

    def __init__(
        self,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        answer_window: int = 2,
        min_paragraphs: int = 3,
        overlap: float = 0.5,
        require_query: bool = False,
        chosen_field: str = "chosen",
        rejected_field: str = "rejected",
        on_failure: str = "skip",
        fallback_segment: str | None = "Mt",
        prompt_field: str = "question",
    ) -> None:
        super().__init__(segments, on_failure, fallback_segment, prompt_field)
        if len(self.segments) != 3:
            raise ValueError(f"the rules segmenter needs exactly 3 segments (query, thinking, answer), got {segments}")
        if answer_window < 1 or min_paragraphs < 1 or not 0.0 < overlap <= 1.0:
            raise ValueError("answer_window and min_paragraphs must be >= 1 and overlap in (0, 1]")
        self.answer_window = answer_window
        self.min_paragraphs = min_paragraphs
        self.overlap = overlap
        self.require_query = require_query
        self.fields = {"chosen": chosen_field, "rejected": rejected_field}

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "answer_window": self.answer_window,
            "min_paragraphs": self.min_paragraphs,
            "overlap": self.overlap,
            "require_query": self.require_query,
            "fields": self.fields,
        }

    def response_text(self, row: Mapping[str, Any], side: str, location: RowLocation) -> str:
        return require_text(row, self.fields[side], location)

    def _answer_unit(self, text: str, units: list[tuple[int, int]]) -> int | None:
        window = range(len(units) - 1, max(len(units) - 1 - self.answer_window, -1), -1)
        for test in (_ANSWER_MARKER.search, _CONCLUSION.search):
            for index in window:
                if test(text[units[index][0] : units[index][1]]):
                    return index
        return None

    def _is_restatement(self, unit: str, prompt: str) -> bool:
        if _RESTATEMENT.search(unit):
            return True
        words = {w.lower() for w in _WORD.findall(unit)}
        prompt_words = {w.lower() for w in _WORD.findall(prompt)}
        return bool(words) and len(words & prompt_words) >= self.overlap * len(words)

    def segment_response(self, row: Mapping[str, Any], side: str, location: RowLocation) -> SegmentedResponse:
        text = self.response_text(row, side, location)
        field = self.fields[side]
        query_name, thinking_name, answer_name = self.segments
        units = split_units(text, self.min_paragraphs)
        answer_index = self._answer_unit(text, units)
        if answer_index is None:
            raise SegmentationError(f"no final answer found in the {side} response", location, field)
        answer = strip_span(text, answer_name, units[answer_index][0], len(text))
        query_end = 0
        query = Span(query_name, 0, 0)
        if answer_index > 0 and self._is_restatement(text[units[0][0] : units[0][1]], self.prompt(row, location)):
            query = strip_span(text, query_name, units[0][0], units[0][1])
            query_end = query.end
        elif self.require_query:
            raise SegmentationError(f"no restatement of the question opens the {side} response", location, field)
        thinking = strip_span(text, thinking_name, query_end, answer.start)
        if thinking.start == thinking.end:
            raise SegmentationError(
                f"no reasoning between the query and the answer in the {side} response", location, field
            )
        if query.start == query.end:
            query = Span(query_name, thinking.start, thinking.start)
        return SegmentedResponse(text, (query, thinking, answer))
