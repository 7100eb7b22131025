"""Metrics over n samples per problem: unbiased pass@k and majority-vote maj@k."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    Args:
        n: samples drawn for the problem.
        c: correct samples among them.
        k: samples allowed (1 <= k <= n).
    """
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def k_values(n: int) -> list[int]:
    """The k reported for n samples: powers of two below n, and n itself (n=6 -> [1, 2, 4, 6])."""
    ks = [1]
    while ks[-1] * 2 < n:
        ks.append(ks[-1] * 2)
    if ks[-1] != n:
        ks.append(n)
    return ks


def majority_vote(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> tuple[str | None, int]:
    """The most frequent answer under the equivalence ``same`` (ties: the earliest group), with its count.

    ``None`` answers (nothing extracted) never win a vote. Groups are formed greedily: an answer joins the first
    group whose representative it matches.
    """
    groups: list[tuple[str, int]] = []
    for answer in answers:
        if answer is None:
            continue
        for index, (representative, count) in enumerate(groups):
            if same(answer, representative):
                groups[index] = (representative, count + 1)
                break
        else:
            groups.append((answer, 1))
    if not groups:
        return None, 0
    best = max(range(len(groups)), key=lambda index: (groups[index][1], -index))
    return groups[best]
