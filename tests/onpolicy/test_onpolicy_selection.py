"""Pair selection from graded samples: every correct x incorrect combination up to M, or one per problem; problems
without a usable correct or incorrect sample counted, never padded."""

from __future__ import annotations

import random

import pytest

from hipo.onpolicy.samples import ProblemSamples
from hipo.onpolicy.selection import check_selection, pair_rows, select_indices


def _problem(pid: str, correct: list[bool]) -> ProblemSamples:
    texts = [f"{pid}-sample{i}" for i in range(len(correct))]
    extracted = ["7" if ok else "8" for ok in correct]
    return ProblemSamples(pid, f"q {pid}", "7", f"prompt {pid}", texts, extracted, correct, [3] * len(correct), 0)


def test_all_gives_every_combination_in_order_when_under_the_cap() -> None:
    pairs = select_indices([True, False, True, False], [True] * 4, "all", 10, random.Random(0))
    assert pairs == [(0, 1), (0, 3), (2, 1), (2, 3)]


def test_all_caps_at_m_distinct_combinations_drawn_reproducibly() -> None:
    correct = [True, True, True, False, False, False]
    first = select_indices(correct, [True] * 6, "all", 4, random.Random("s"))
    again = select_indices(correct, [True] * 6, "all", 4, random.Random("s"))
    assert first == again and len(set(first)) == 4 and first == sorted(first)
    assert all(correct[c] and not correct[w] for c, w in first)


def test_one_gives_one_pair_of_a_correct_and_an_incorrect_sample() -> None:
    for seed in range(20):
        (pair,) = select_indices([False, True, False, True], [True] * 4, "one", 4, random.Random(seed))
        assert pair[0] in (1, 3) and pair[1] in (0, 2)


def test_unusable_samples_never_enter_a_pair() -> None:
    pairs = select_indices([True, True, False, False], [False, True, True, False], "all", 10, random.Random(0))
    assert pairs == [(1, 2)]


def test_problems_without_a_pair_are_counted_not_padded() -> None:
    problems = [_problem("a", [True, True]), _problem("b", [False, False]), _problem("c", [True, False])]
    rows, counts = pair_rows(problems, [[True, True]] * 3, "all", 4, seed=0)
    assert (counts.problems, counts.with_pair, counts.all_correct, counts.all_incorrect, counts.pairs) == (
        3,
        1,
        1,
        1,
        1,
    )
    (row,) = rows
    assert row["chosen"] == "c-sample0" and row["rejected"] == "c-sample1" and row["prompt"] == "prompt c"
    assert (row["gold"], row["chosen_correct"], row["rejected_correct"]) == ("7", True, False)
    assert (row["chosen_answer"], row["rejected_answer"], row["chosen_sample"], row["rejected_sample"]) == (
        "7",
        "8",
        0,
        1,
    )


def test_a_problem_whose_correct_samples_are_all_unusable_counts_as_all_incorrect() -> None:
    rows, counts = pair_rows([_problem("a", [True, False])], [[False, True]], "all", 4, seed=0)
    assert rows == [] and counts.all_incorrect == 1 and counts.all_correct == 0


def test_bad_selection_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="selection.mode"):
        check_selection("best", 4)
    with pytest.raises(ValueError, match="max_pairs_per_problem"):
        check_selection("all", 0)
