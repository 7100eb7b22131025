"""Segmenter for pre-decomposed rows: one column per (segment, side), e.g. ``Rq_a, Mt_a, Ra_a, Rq_b, Mt_b, Ra_b``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedResponse, Span
from hipo.data.segmenters.base import Segmenter, require_text


class FieldsSegmenter(Segmenter):
    """Joins the parts of each response IN THE CONFIGURED SEGMENT ORDER and takes the spans from the joined string.

    The response text is ``separator.join(parts)`` (each part stripped of surrounding whitespace, empty parts
    left out of the join) and each span is the character range of its part inside that very string, so spans and
    text can never drift apart (the reference code tokenized the parts alone and joined them in another order).

    Args:
        segments: ordered segment names; also the join order.
        chosen_pattern: column name of a chosen part, ``{segment}`` replaced by the segment name (``Rq_a``).
        rejected_pattern: the same for the rejected response (``Rq_b``).
        separator: the text between consecutive parts (outside every span).
        allow_empty_segments: accept a missing/empty part as an empty segment instead of a failure.
        chosen_field: optional column with the whole chosen response, used as the ``single_segment`` fallback text.
        rejected_field: the same for the rejected response.
        on_failure, fallback_segment, prompt_field: see :class:`Segmenter`.
    """

    def __init__(
        self,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        chosen_pattern: str = "{segment}_a",
        rejected_pattern: str = "{segment}_b",
        separator: str = "\n\n",
        allow_empty_segments: bool = False,
        chosen_field: str | None = None,
        rejected_field: str | None = None,
        on_failure: str = "skip",
        fallback_segment: str | None = "Mt",
        prompt_field: str = "question",
    ) -> None:
        super().__init__(segments, on_failure, fallback_segment, prompt_field)
        for pattern in (chosen_pattern, rejected_pattern):
            if "{segment}" not in pattern:
                raise ValueError(f"column pattern {pattern!r} must contain '{{segment}}'")
        self.patterns = {"chosen": chosen_pattern, "rejected": rejected_pattern}
        self.whole_fields = {"chosen": chosen_field, "rejected": rejected_field}
        self.separator = separator
        self.allow_empty_segments = allow_empty_segments

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "patterns": self.patterns,
            "whole_fields": self.whole_fields,
            "separator": self.separator,
            "allow_empty_segments": self.allow_empty_segments,
        }

    def _parts(self, row: Mapping[str, Any], side: str, location: RowLocation) -> list[tuple[str, str, str]]:
        """``(segment, column, stripped text)`` for every segment of ``side``."""
        parts = []
        for name in self.segments:
            column = self.patterns[side].format(segment=name)
            parts.append((name, column, require_text(row, column, location).strip()))
        return parts

    def response_text(self, row: Mapping[str, Any], side: str, location: RowLocation) -> str:
        whole = self.whole_fields[side]
        if whole is not None and row.get(whole):
            return require_text(row, whole, location)
        return self.separator.join(text for _, _, text in self._parts(row, side, location) if text)

    def segment_response(self, row: Mapping[str, Any], side: str, location: RowLocation) -> SegmentedResponse:
        pieces: list[str] = []
        spans: list[Span] = []
        position = 0
        for name, column, text in self._parts(row, side, location):
            if not text:
                if not self.allow_empty_segments:
                    raise SegmentationError(f"empty {side} segment {name!r}", location, column)
                spans.append(Span(name, position, position))
                continue
            if pieces:
                pieces.append(self.separator)
                position += len(self.separator)
            spans.append(Span(name, position, position + len(text)))
            pieces.append(text)
            position += len(text)
        return SegmentedResponse("".join(pieces), tuple(spans))
