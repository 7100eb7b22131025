"""Plain-text data types: a preference pair whose responses carry named character spans.

Everything downstream (tokenization, pooling, losses) refers to segments by their *index* in the configured
segment-name list (``("Rq", "Mt", "Ra")`` by default). Text of a response that lies in no span is still part of
the response: it counts in the whole-response term only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_SEGMENTS: tuple[str, ...] = ("Rq", "Mt", "Ra")


@dataclass(frozen=True)
class Span:
    """A named half-open character range ``[start, end)`` of a response's text."""

    name: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"span {self.name!r} has invalid range [{self.start}, {self.end})")


@dataclass(frozen=True)
class SegmentedResponse:
    """A response text and its ordered, non-overlapping named spans (ordered by position in the text)."""

    text: str
    spans: tuple[Span, ...] = ()

    def __post_init__(self) -> None:
        previous_end = 0
        for span in self.spans:
            if span.end > len(self.text):
                raise ValueError(f"span {span.name!r} ends at {span.end} beyond the text length {len(self.text)}")
            if span.start < previous_end:
                raise ValueError(f"span {span.name!r} overlaps the previous span or is out of order")
            previous_end = span.end

    def segment_text(self, name: str) -> str:
        """The text of the span called ``name`` ('' when the response has no such span)."""
        for span in self.spans:
            if span.name == name:
                return self.text[span.start : span.end]
        return ""


@dataclass(frozen=True)
class SegmentedPair:
    """One preference pair: a prompt, a preferred (chosen) and a dispreferred (rejected) segmented response.

    ``rejected`` is None for a single response (data prepared for a loss that scores chosen responses alone, such as
    SFT: rows may then carry only a ``completion``). ``meta`` carries provenance: ``source`` (file or dataset id),
    ``row`` (1-based line/row number), and for the synthetic data ``error_segment`` (the segment holding the
    rejected response's single error).
    """

    prompt: str
    chosen: SegmentedResponse
    rejected: SegmentedResponse | None
    meta: dict[str, Any] = field(default_factory=dict)
