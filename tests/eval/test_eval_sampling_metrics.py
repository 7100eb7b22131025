"""pass@k against brute-force enumeration and hand values; majority vote with an equivalence relation."""

from __future__ import annotations

from itertools import combinations

import pytest

from hipo.eval.grading import answers_match
from hipo.eval.sampling_metrics import k_values, majority_vote, pass_at_k


def brute_force_pass_at_k(verdicts: list[bool], k: int) -> float:
    """The fraction of all k-subsets of the samples that contain at least one correct sample."""
    subsets = list(combinations(verdicts, k))
    return sum(any(subset) for subset in subsets) / len(subsets)


def test_pass_at_k_hand_values() -> None:
    """n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; k=1 is c/n; c=0 gives 0; n-c < k gives 1."""
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0


@pytest.mark.parametrize("verdicts", [[True, False, False, True, False, False], [False] * 5 + [True], [True] * 3])
def test_pass_at_k_matches_enumeration(verdicts: list[bool]) -> None:
    n, c = len(verdicts), sum(verdicts)
    for k in range(1, n + 1):
        assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(verdicts, k))


def test_pass_at_k_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_k_values() -> None:
    assert k_values(1) == [1]
    assert k_values(4) == [1, 2, 4]
    assert k_values(6) == [1, 2, 4, 6]
    assert k_values(16) == [1, 2, 4, 8, 16]


def test_majority_vote_groups_equivalent_answers() -> None:
    # "0.5", "\\frac{1}{2}" and "1/2" are one answer (3 votes) against "2" (2 votes); None never wins.
    answers = ["2", "0.5", None, "\\frac{1}{2}", "2", "1/2"]
    winner, votes = majority_vote(answers, answers_match)
    assert answers_match(winner, "0.5") and votes == 3
    assert majority_vote(["3", "4"], answers_match) == ("3", 1)  # a tie goes to the earliest answer
    assert majority_vote([None, None], answers_match) == (None, 0)
