"""From graded samples to preference pairs: which (correct, incorrect) combinations of one problem become rows.

A sample is *usable* when its text is not empty and the segmenter found its segments (or, under
``segmenter.on_failure=single_segment``, kept it whole); unusable samples never enter a pair. Among the usable
samples of one problem, with C the correct ones and W the incorrect ones (a sample without an extractable answer is
incorrect):

* ``selection.mode=all``: every combination (c, w) in C × W; when there are more than
  ``selection.max_pairs_per_problem`` (M), M of them drawn without replacement by a generator seeded with the
  selection seed and the problem id, kept in (c, w) order;
* ``selection.mode=one``: one c from C and one w from W, drawn by that generator.

A problem with no usable correct or no usable incorrect sample gives no pair: it is counted (``all_correct``,
``all_incorrect``), never padded with a pair from elsewhere. Rows are TRL's standard preference format plus the
problem's gold answer and each side's grade: ``{"prompt", "chosen", "rejected", "gold", "id", "question",
"chosen_answer", "rejected_answer", "chosen_correct", "rejected_correct", "chosen_sample", "rejected_sample"}``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hipo.onpolicy.samples import ProblemSamples

SELECTION_MODES = ("all", "one")


@dataclass
class SelectionCounts:
    """What pair selection found, over all problems.

    Attributes:
        problems: problems seen; with_pair: those that gave at least one pair.
        all_correct / all_incorrect: problems without a usable incorrect / correct sample (no pair).
        pairs: rows written.
    """

    problems: int = 0
    with_pair: int = 0
    all_correct: int = 0
    all_incorrect: int = 0
    pairs: int = 0
    by_problem: dict[str, int] = field(default_factory=dict)


def check_selection(mode: str, max_pairs_per_problem: int) -> None:
    """Raises ValueError for an unknown mode or a cap below 1."""
    if mode not in SELECTION_MODES:
        raise ValueError(f"selection.mode={mode!r}: expected one of {list(SELECTION_MODES)}")
    if max_pairs_per_problem < 1:
        raise ValueError(f"selection.max_pairs_per_problem={max_pairs_per_problem}: must be >= 1")


def select_indices(
    correct: Sequence[bool], usable: Sequence[bool], mode: str, max_pairs: int, rng: random.Random
) -> list[tuple[int, int]]:
    """The (chosen sample, rejected sample) index pairs of one problem (see the module docstring)."""
    good = [i for i, (ok, use) in enumerate(zip(correct, usable, strict=True)) if use and ok]
    bad = [i for i, (ok, use) in enumerate(zip(correct, usable, strict=True)) if use and not ok]
    if not good or not bad:
        return []
    if mode == "one":
        return [(rng.choice(good), rng.choice(bad))]
    combinations = [(c, w) for c in good for w in bad]
    if len(combinations) <= max_pairs:
        return combinations
    return sorted(rng.sample(combinations, max_pairs))


def pair_rows(
    problems: Sequence[ProblemSamples],
    usable: Sequence[Sequence[bool]],
    mode: str,
    max_pairs_per_problem: int,
    seed: int,
) -> tuple[list[dict[str, Any]], SelectionCounts]:
    """The preference rows of every problem, and what selection found (see the module docstring).

    Args:
        problems: each problem's graded samples.
        usable: per problem, per sample, whether it may enter a pair.
        mode: ``all`` | ``one``.
        max_pairs_per_problem: M, the cap of ``all``.
        seed: the selection seed (with each problem's id).
    """
    check_selection(mode, max_pairs_per_problem)
    rows: list[dict[str, Any]] = []
    counts = SelectionCounts(problems=len(problems))
    for problem, flags in zip(problems, usable, strict=True):
        rng = random.Random(f"hipo-pair-selection:{seed}:{problem.id}")
        chosen_pairs = select_indices(problem.correct, flags, mode, max_pairs_per_problem, rng)
        if not chosen_pairs:
            has_good = any(ok and use for ok, use in zip(problem.correct, flags, strict=True))
            counts.all_correct += int(has_good)
            counts.all_incorrect += int(not has_good)
            continue
        counts.with_pair += 1
        counts.by_problem[problem.id] = len(chosen_pairs)
        for c, w in chosen_pairs:
            rows.append(
                {
                    "prompt": problem.prompt,
                    "chosen": problem.texts[c],
                    "rejected": problem.texts[w],
                    "gold": problem.gold,
                    "id": problem.id,
                    "question": problem.question,
                    "chosen_answer": problem.extracted[c],
                    "rejected_answer": problem.extracted[w],
                    "chosen_correct": problem.correct[c],
                    "rejected_correct": problem.correct[w],
                    "chosen_sample": c,
                    "rejected_sample": w,
                }
            )
    counts.pairs = len(rows)
    return rows, counts
