"""The segmenter interface and the failure policy shared by every segmenter.

A segmenter turns one raw row (a mapping from the source) into a :class:`SegmentedPair`: the prompt plus a chosen
and a rejected response, each with named character spans. When the segments of a response cannot be found it
raises :class:`SegmentationError`; :func:`segment_rows` then applies the configured ``on_failure`` policy:

* ``skip``: the pair is dropped (counted in ``DataStats.skipped["segmentation_failed"]``);
* ``single_segment``: the pair is kept with BOTH responses as one segment (``fallback_segment``, default ``Mt``),
  or as text outside every segment (whole-response term only) when ``fallback_segment`` is ``None``. Both sides
  are treated alike so that no segment compares a partial response with a whole one;
* ``error``: the error propagates (it names the file, line and field).

Pairs with an empty (or whitespace-only) response are always skipped and counted as ``empty_response``.

For a loss that scores chosen responses alone (SFT), :func:`segment_rows` reads the chosen side only
(``responses_only=True``): the pairs it yields have ``rejected=None``, and a row that has a ``completion`` field
but no ``chosen`` one (TRL's prompt-completion rows) is read as if ``completion`` were ``chosen``.

Before segmenting, callers hand all rows to :meth:`Segmenter.prepare` (a no-op here): the ``llm`` segmenter uses it
to decompose every response concurrently rather than one request at a time.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from hipo.data.data_stats import EMPTY_RESPONSE, SEGMENTATION_FAILED, DataStats
from hipo.data.row_errors import DataError, RowLocation, SegmentationError
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedPair, SegmentedResponse, Span

FAILURE_POLICIES = ("skip", "single_segment", "error")
SIDES = ("chosen", "rejected")
COMPLETION_FIELD = "completion"  # the response column of prompt-completion rows (read as chosen, responses only)


WHOLE_RESPONSE_COLUMNS = ("chosen", "rejected")
DECOMPOSED_COLUMN = re.compile(r"^(Rq|Mt|Ra)_[ab]$")


def segmenter_hint(row: Mapping[str, Any], missing: str) -> str | None:
    """Advice when a missing column suggests the wrong segmenter for these rows, else None."""
    has_whole = all(column in row for column in WHOLE_RESPONSE_COLUMNS)
    has_parts = any(DECOMPOSED_COLUMN.match(str(column)) for column in row)
    if has_whole and not has_parts and missing not in WHOLE_RESPONSE_COLUMNS:
        return "rows have chosen/rejected text: use segmenter=tags or segmenter=rules"
    if has_parts and not has_whole and missing in WHOLE_RESPONSE_COLUMNS:
        return "rows are already decomposed (Rq_a ... Ra_b): use segmenter=fields"
    return None


def require_field(row: Mapping[str, Any], name: str, location: RowLocation) -> Any:
    """``row[name]``, or a :class:`DataError` naming the field and the row (and a hint) when the column is absent."""
    if name not in row:
        present = ", ".join(sorted(map(str, row.keys())))
        raise DataError(f"missing field (row has: {present})", location, name, hint=segmenter_hint(row, name))
    return row[name]


def require_text(row: Mapping[str, Any], name: str, location: RowLocation) -> str:
    """A string field (``None`` reads as ''); any other type is a :class:`DataError`."""
    value = require_field(row, name, location)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", location, name)
    return value


def strip_span(text: str, name: str, start: int, end: int) -> Span:
    """The span ``[start, end)`` of ``text`` with leading and trailing whitespace moved outside it."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(name, start, end)


class Segmenter(ABC):
    """Base class: common options plus the pair assembly; subclasses find the spans of one response.

    Args:
        segments: ordered segment names (the ids 0..S-1 used downstream).
        on_failure: ``skip`` | ``single_segment`` | ``error`` (see the module docstring).
        fallback_segment: the one segment a failed pair's responses become under ``single_segment``
            (``None``: no segment, whole-response term only).
        prompt_field: the row's prompt column.
    """

    def __init__(
        self,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        on_failure: str = "skip",
        fallback_segment: str | None = "Mt",
        prompt_field: str = "question",
    ) -> None:
        self.segments = tuple(segments)
        if not self.segments or len(set(self.segments)) != len(self.segments):
            raise ValueError(f"segments must be non-empty and distinct, got {list(segments)}")
        if on_failure not in FAILURE_POLICIES:
            raise ValueError(f"on_failure must be one of {FAILURE_POLICIES}, got {on_failure!r}")
        if fallback_segment is not None and fallback_segment not in self.segments:
            raise ValueError(f"fallback_segment {fallback_segment!r} is not one of the segments {self.segments}")
        self.on_failure = on_failure
        self.fallback_segment = fallback_segment
        self.prompt_field = prompt_field

    @abstractmethod
    def response_text(self, row: Mapping[str, Any], side: str, location: RowLocation) -> str:
        """The whole text of the ``side`` ('chosen' | 'rejected') response (used for emptiness and fallbacks)."""

    @abstractmethod
    def segment_response(self, row: Mapping[str, Any], side: str, location: RowLocation) -> SegmentedResponse:
        """The ``side`` response with its spans; raises :class:`SegmentationError` when they cannot be found."""

    def prepare(self, rows: Sequence[tuple[RowLocation, Mapping[str, Any]]]) -> bool:
        """Work to do over all rows at once before :func:`segment_rows` reads them one by one (default: none).

        A segmenter that calls a remote model (``llm``) sends every request here, concurrently, and keeps the
        results for ``segment_response``.

        Returns:
            Whether the outcome is final: False when some work failed for a reason a rerun may not meet (a network
            or server error), so that the caller does not cache a result with those rows missing.
        """
        return True

    def config(self) -> dict[str, Any]:
        """The options that determine the output (hashed into the prepared-data cache fingerprint)."""
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "segments": list(self.segments),
            "on_failure": self.on_failure,
            "fallback_segment": self.fallback_segment,
            "prompt_field": self.prompt_field,
        }

    def prompt(self, row: Mapping[str, Any], location: RowLocation) -> str:
        """The prompt text; an empty prompt is a :class:`DataError`."""
        text = require_text(row, self.prompt_field, location)
        if not text.strip():
            raise DataError("empty prompt", location, self.prompt_field)
        return text

    def segment_pair(
        self, row: Mapping[str, Any], location: RowLocation, sides: Sequence[str] = SIDES
    ) -> SegmentedPair:
        """The segmented pair of ``row`` (raises :class:`SegmentationError` / :class:`DataError`); with
        ``sides=("chosen",)`` the chosen response alone (``rejected=None``)."""
        return SegmentedPair(
            prompt=self.prompt(row, location),
            chosen=self.segment_response(row, "chosen", location),
            rejected=self.segment_response(row, "rejected", location) if "rejected" in sides else None,
            meta=self.meta(row, location),
        )

    def fallback_pair(
        self, row: Mapping[str, Any], location: RowLocation, sides: Sequence[str] = SIDES
    ) -> SegmentedPair:
        """The responses of ``sides`` whole: one ``fallback_segment`` span each, or no span (whole-only)."""
        responses: dict[str, SegmentedResponse] = {}
        for side in sides:
            text = self.response_text(row, side, location)
            spans = () if self.fallback_segment is None else (strip_span(text, self.fallback_segment, 0, len(text)),)
            responses[side] = SegmentedResponse(text, spans)
        meta = {**self.meta(row, location), "single_segment": True}
        return SegmentedPair(self.prompt(row, location), responses["chosen"], responses.get("rejected"), meta)

    def meta(self, row: Mapping[str, Any], location: RowLocation) -> dict[str, Any]:
        """Provenance: source, row and (when the row records it) the error segment."""
        meta: dict[str, Any] = {"source": location.source, "row": location.row}
        if row.get("error_segment") is not None:
            meta["error_segment"] = row["error_segment"]
        if row.get("id") is not None:
            meta["id"] = row["id"]
        return meta


def completion_as_chosen(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """``row`` with its ``completion`` as ``chosen`` when it has the first and not the second (else ``row``)."""
    if COMPLETION_FIELD in row and "chosen" not in row:
        return {**row, "chosen": row[COMPLETION_FIELD]}
    return row


def segment_rows(
    rows: Iterable[tuple[RowLocation, Mapping[str, Any]]],
    segmenter: Segmenter,
    stats: DataStats,
    responses_only: bool = False,
) -> Iterator[SegmentedPair]:
    """Segments each row under the segmenter's failure policy, counting rows, skips and fallbacks in ``stats``.

    ``responses_only``: the chosen response alone (``rejected=None``; see the module docstring).
    """
    sides = ("chosen",) if responses_only else SIDES
    for location, raw in rows:
        stats.rows_read += 1
        row = completion_as_chosen(raw) if responses_only else raw
        if any(not segmenter.response_text(row, side, location).strip() for side in sides):
            stats.skip(EMPTY_RESPONSE)
            continue
        try:
            pair = segmenter.segment_pair(row, location, sides)
        except SegmentationError:
            if segmenter.on_failure == "error":
                raise
            if segmenter.on_failure == "skip":
                stats.skip(SEGMENTATION_FAILED)
                continue
            stats.single_segment += 1
            pair = segmenter.fallback_pair(row, location, sides)
        yield pair
