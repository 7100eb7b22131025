"""Segmenter for responses written in the sectioned format the paper's prompt asks for (tags or headers).

Two markups are recognised (``style='auto'`` tries tags first, then headers):

* tags: ``<Rq>…</Rq>``, ``<refined_query>…</refined_query>``, … (case-insensitive, any alias of a segment);
* headers: a line that starts with an alias as a markdown heading or a bold/plain label, optionally numbered,
  e.g. ``### Meta-thinking``, ``**Refined Query:** …``, ``## 2. Refined Answer:``, ``Refined Answer (Ra):``
  (a plain label needs its colon; a heading or bold label without colon must be alone on its line). The body
  runs from after the header to the next recognised header (or the end of the text).

Tags and headers are formatting scaffolding that is identical in good and bad responses, so they are NOT part of
a segment: they stay outside every span (scored in the whole-response term only). A span covers its section's
body with surrounding whitespace removed. Text before the first section or between sections is outside text too.
Every configured segment must appear exactly once (unless listed in ``optional``), else SegmentationError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedResponse, Span
from hipo.data.segmenters.base import Segmenter, require_text, strip_span

DEFAULT_ALIASES: dict[str, list[str]] = {
    "Rq": ["Rq", "Refined Query", "Refined_Query", "Refined-Query", "Query Refinement"],
    "Mt": ["Mt", "Meta-thinking", "Meta thinking", "Metathinking", "Meta_thinking", "Meta-Thinking"],
    "Ra": ["Ra", "Refined Answer", "Refined_Answer", "Refined-Answer"],
}
STYLES = ("auto", "tags", "headers")


def _alias_pattern(aliases: Sequence[str]) -> str:
    """A regex alternation of aliases (longest first; spaces, '_' and '-' interchangeable)."""
    escaped = [re.sub(r"\\?[ _-]", r"[ _-]?", re.escape(alias)) for alias in sorted(aliases, key=len, reverse=True)]
    return "|".join(escaped)


class TagsSegmenter(Segmenter):
    """Finds segments delimited by tags or section headers in ``chosen_field`` / ``rejected_field``.

    Args:
        segments: ordered segment names.
        aliases: per segment, the labels that introduce it (defaults for Rq/Mt/Ra; other names: themselves).
        style: ``auto`` | ``tags`` | ``headers``.
        optional: segments that may be absent (an absent one becomes an empty span where it would be).
        chosen_field, rejected_field: the response columns.
        on_failure, fallback_segment, prompt_field: see :class:`Segmenter`.
    """

    def __init__(
        self,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        aliases: Mapping[str, Sequence[str]] | None = None,
        style: str = "auto",
        optional: Sequence[str] = (),
        chosen_field: str = "chosen",
        rejected_field: str = "rejected",
        on_failure: str = "skip",
        fallback_segment: str | None = "Mt",
        prompt_field: str = "question",
    ) -> None:
        super().__init__(segments, on_failure, fallback_segment, prompt_field)
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        given = dict(aliases or {})
        self.aliases = {name: list(given.get(name, DEFAULT_ALIASES.get(name, [name]))) for name in self.segments}
        self.style = style
        self.optional = tuple(optional)
        self.fields = {"chosen": chosen_field, "rejected": rejected_field}
        self._label_to_segment: list[tuple[re.Pattern[str], str]] = [
            (re.compile(rf"^(?:{_alias_pattern(a)})$", re.IGNORECASE), name) for name, a in self.aliases.items()
        ]
        every = _alias_pattern([alias for a in self.aliases.values() for alias in a])
        self._tag = re.compile(rf"<(?P<label>{every})>(?P<body>.*?)</(?P=label)>", re.IGNORECASE | re.DOTALL)
        self._header = re.compile(
            rf"^[ \t]*(?P<hashes>\#{{1,6}}[ \t]*)?(?P<bold>\*\*|__)?[ \t]*(?:\d+[.)][ \t]*)?"
            rf"(?P<label>{every})(?!\w)[ \t]*"
            rf"(?:\([^)\n]*\))?[ \t]*(?P<colon1>:)?[ \t]*(?:\*\*|__)?[ \t]*(?P<colon2>:)?",
            re.IGNORECASE | re.MULTILINE,
        )

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "aliases": self.aliases,
            "style": self.style,
            "optional": list(self.optional),
            "fields": self.fields,
        }

    def _segment_of(self, label: str) -> str:
        for pattern, name in self._label_to_segment:
            if pattern.match(label):
                return name
        raise AssertionError(f"label {label!r} matched no alias")  # unreachable: labels come from the aliases

    def response_text(self, row: Mapping[str, Any], side: str, location: RowLocation) -> str:
        return require_text(row, self.fields[side], location)

    def _tag_sections(self, text: str) -> list[tuple[str, int, int]]:
        return [(self._segment_of(m["label"]), m.start("body"), m.end("body")) for m in self._tag.finditer(text)]

    def _header_sections(self, text: str) -> list[tuple[str, int, int]]:
        headers = []
        for m in self._header.finditer(text):
            eol = text.find("\n", m.end())
            rest_of_line = text[m.end() : eol if eol >= 0 else len(text)]
            marked = m["hashes"] or m["bold"]
            if m["colon1"] or m["colon2"] or (marked and not rest_of_line.strip()):
                headers.append(m)
        sections = []
        for i, m in enumerate(headers):
            end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
            sections.append((self._segment_of(m["label"]), m.end(), end))
        return sections

    def segment_response(self, row: Mapping[str, Any], side: str, location: RowLocation) -> SegmentedResponse:
        text = self.response_text(row, side, location)
        field = self.fields[side]
        sections: list[tuple[str, int, int]] = []
        if self.style in ("auto", "tags"):
            sections = self._tag_sections(text)
        if not sections and self.style in ("auto", "headers"):
            sections = self._header_sections(text)
        seen: dict[str, Span] = {}
        for name, start, end in sections:
            if name in seen:
                raise SegmentationError(
                    f"segment {name!r} appears more than once in the {side} response", location, field
                )
            seen[name] = strip_span(text, name, start, end)
        missing = [name for name in self.segments if name not in seen and name not in self.optional]
        if missing:
            raise SegmentationError(f"no {', '.join(missing)} section in the {side} response", location, field)
        spans = sorted(seen.values(), key=lambda s: (s.start, s.end))
        spans = self._place_absent(spans)
        return SegmentedResponse(text, tuple(spans))

    def _place_absent(self, spans: list[Span]) -> list[Span]:
        """Adds an empty span for each absent optional segment, just before the next present configured segment."""
        present = {s.name for s in spans}
        out = list(spans)
        for index, name in enumerate(self.segments):
            if name in present:
                continue
            later = [s for s in out if s.name in self.segments[index + 1 :]]
            position = later[0].start if later else (out[-1].end if out else 0)
            out.append(Span(name, position, position))
        return sorted(out, key=lambda s: (s.start, s.end, self.segments.index(s.name)))
