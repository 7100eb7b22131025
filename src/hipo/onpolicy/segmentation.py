"""Which sampled responses can enter a pair: segmented by the configured segmenter, under its failure policy.

Each generation is segmented as the ``chosen`` response of a row in TRL's standard format (what training will read
back from the pairs file with the same segmenter), after the segmenter's ``prepare`` has seen all of them (the
``llm`` segmenter decomposes them concurrently there). An empty generation is never usable (``empty``). A
generation whose segments are not found is unusable under ``on_failure=skip`` (``failed``), kept whole under
``single_segment`` (``single_segment``), and stops the command under ``error``, naming the samples file's line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmenters.base import Segmenter
from hipo.onpolicy.samples import ProblemSamples


@dataclass
class SegmentationCounts:
    """Generations segmented, kept whole, failed, and empty."""

    segmented: int = 0
    single_segment: int = 0
    failed: int = 0
    empty: int = 0


def usable_samples(
    problems: Sequence[ProblemSamples], segmenter: Segmenter, source: str
) -> tuple[list[list[bool]], SegmentationCounts]:
    """Per problem, per sample, whether it may enter a pair; and the counts (see the module docstring).

    Args:
        problems: the graded samples, in samples-file order (problem ``i`` is line ``i + 2`` of ``source``).
        segmenter: the configured segmenter.
        source: the samples file, for the locations errors name.

    Raises:
        SegmentationError: a generation without its segments under ``on_failure=error``.
    """
    rows = []
    for index, problem in enumerate(problems):
        location = RowLocation(source, index + 2)
        for text in problem.texts:
            rows.append((location, {segmenter.prompt_field: problem.prompt, "chosen": text, "rejected": text}))
    segmenter.prepare([(location, row) for location, row in rows if str(row["chosen"]).strip()])
    counts = SegmentationCounts()
    usable: list[list[bool]] = []
    position = 0
    for problem in problems:
        flags = []
        for _ in problem.texts:
            location, row = rows[position]
            position += 1
            flags.append(_usable(segmenter, row, location, counts))
        usable.append(flags)
    return usable, counts


def _usable(segmenter: Segmenter, row: dict[str, str], location: RowLocation, counts: SegmentationCounts) -> bool:
    if not row["chosen"].strip():
        counts.empty += 1
        return False
    try:
        segmenter.segment_response(row, "chosen", location)
    except SegmentationError:
        if segmenter.on_failure == "error":
            raise
        if segmenter.on_failure == "skip":
            counts.failed += 1
            return False
        counts.single_segment += 1
        return True
    counts.segmented += 1
    return True
