"""Implicit-reward metrics of preference pairs, per term (segments then ``whole``).

For pair i and term k the margin is chosen_rewards[i, k] - rejected_rewards[i, k] (rewards beta * (log pi -
log pi_ref)). Only pairs where the term is present (``term_mask``) enter a term's statistics; a term present in no
pair of the batch gets no key (rather than a NaN that would poison averages). A pair is correct for a term when its
margin is > 0; an exact tie scores ``tie_score`` (0 by default, as in TRL; 0.5 makes a policy equal to its reference
score chance).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class PairSums(NamedTuple):
    """Summable statistics of one term over a set of pairs (float64 scalars).

    Attributes:
        margin_sum: sum of the margins over present pairs.
        num_correct: number of present pairs with a positive margin (ties count ``tie_score``).
        num_present: number of pairs where the term is present.
    """

    margin_sum: torch.Tensor
    num_correct: torch.Tensor
    num_present: torch.Tensor


def _check(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, term_mask: torch.Tensor, names: list[str]):
    shapes = {
        "chosen_rewards": tuple(chosen_rewards.shape),
        "rejected_rewards": tuple(rejected_rewards.shape),
        "term_mask": tuple(term_mask.shape),
    }
    if chosen_rewards.dim() != 2 or len(set(shapes.values())) != 1:
        raise ValueError(f"pair metrics expect 2-D [B, S+1] tensors of one shape; got {shapes}")
    if chosen_rewards.shape[1] != len(names):
        raise ValueError(f"pair metrics: {chosen_rewards.shape[1]} terms but {len(names)} names {list(names)}")


def pair_metric_sums(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    term_mask: torch.Tensor,
    names: list[str],
    tie_score: float = 0.0,
) -> dict[str, PairSums]:
    """Per-term sums that add exactly across batches (for a whole validation set).

    Args:
        chosen_rewards: [B, S+1] implicit rewards of the chosen responses.
        rejected_rewards: [B, S+1] implicit rewards of the rejected responses.
        term_mask: [B, S+1] bool, True where the term is present.
        names: S+1 names, e.g. ``["Rq", "Mt", "Ra", "whole"]``.
        tie_score: credit of a pair whose margin is exactly 0.

    Returns:
        ``{name: PairSums}`` for every name (including terms with no present pair: zeros).
    """
    _check(chosen_rewards, rejected_rewards, term_mask, names)
    with torch.no_grad():
        margins = (chosen_rewards.detach() - rejected_rewards.detach()).double()
        present = term_mask.to(torch.float64)
        score = (margins > 0).double() + tie_score * (margins == 0).double()
        margin_sum = (margins * present).sum(0)
        correct = (score * present).sum(0)
        count = present.sum(0)
    return {name: PairSums(margin_sum[k], correct[k], count[k]) for k, name in enumerate(names)}


def metrics_from_sums(sums: dict[str, PairSums]) -> dict[str, float]:
    """``rewards/margin/<name>`` and ``rewards/accuracy/<name>`` from (possibly accumulated) ``PairSums``.

    Names with no present pair are left out.
    """
    out: dict[str, float] = {}
    for name, s in sums.items():
        n = float(s.num_present)
        if n > 0:
            out[f"rewards/margin/{name}"] = float(s.margin_sum) / n
            out[f"rewards/accuracy/{name}"] = float(s.num_correct) / n
    return out


def add_sums(a: dict[str, PairSums], b: dict[str, PairSums]) -> dict[str, PairSums]:
    """Elementwise sum of two ``pair_metric_sums`` results over the same names."""
    if a.keys() != b.keys():
        raise ValueError(f"add_sums: names differ: {list(a)} vs {list(b)}")
    return {name: PairSums(*(x + y for x, y in zip(a[name], b[name], strict=True))) for name in a}


def pair_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    term_mask: torch.Tensor,
    names: list[str],
    tie_score: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Batch means: ``rewards/margin/<name>`` (mean margin over present pairs) and ``rewards/accuracy/<name>``.

    Args:
        chosen_rewards: [B, S+1] implicit rewards of the chosen responses.
        rejected_rewards: [B, S+1] implicit rewards of the rejected responses.
        term_mask: [B, S+1] bool, True where the term is present.
        names: S+1 names, segments then ``whole``.
        tie_score: credit of a pair whose margin is exactly 0.

    Returns:
        Scalar float32 tensors (detached, on the rewards' device) keyed by metric name; terms absent from every
        pair are left out.
    """
    _check(chosen_rewards, rejected_rewards, term_mask, names)
    with torch.no_grad():
        margins = (chosen_rewards.detach() - rejected_rewards.detach()).float()
        present = term_mask.float()
        score = (margins > 0).float() + tie_score * (margins == 0).float()
        count = present.sum(0)
        mean_margin = (margins * present).sum(0) / count.clamp(min=1)
        accuracy = (score * present).sum(0) / count.clamp(min=1)
    out: dict[str, torch.Tensor] = {}
    for k, (name, n) in enumerate(zip(names, count.tolist(), strict=True)):  # one host sync for the presence test
        if n > 0:
            out[f"rewards/margin/{name}"] = mean_margin[k]
            out[f"rewards/accuracy/{name}"] = accuracy[k]
    return out
