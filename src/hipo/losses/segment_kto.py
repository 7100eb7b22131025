"""Segment-level KTO: a KTO term per named segment plus the whole-response term, fused by the HiPO weights.

For an unpaired example i (desirable or not) and term k = 0..S (segments, then the whole response), with the
implied reward r_ik = log pi(y_i,k | x_i) - log pi_ref(y_i,k | x_i) summed over segment k's tokens and a reference
point per term

    z0_k = max(0, mean_{j: segment k present in KL row j} [log pi(y'_j,k | x_j) - log pi_ref(y'_j,k | x_j)])

(detached; 0 when no mismatched row has segment k), the term loss is KTO's

    desirable:    l_ik = w_d * (1 - sigma(beta * (r_ik - z0_k)))
    undesirable:  l_ik = w_u * (1 - sigma(beta * (z0_k - r_ik)))

and the example's loss is sum_k w_k * m_ik * l_ik, where m_ik = 1 when example i has a token in segment k. An absent
segment contributes nothing and the other weights are not renormalized (as in :mod:`hipo.losses.hipo`). With the
weights (0, ..., 0, 1) it is whole-response KTO exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class SegmentKTOOutput(NamedTuple):
    """Per-example results over S+1 terms.

    Attributes:
        losses: [N] weighted sum of the present terms per example (not reduced).
        term_losses: [N, S+1] unweighted l_ik; 0 where the term is absent.
        rewards: [N, S+1] beta * r_ik, detached.
        kl: [S+1] the reference points z0_k used (clamped >= 0, detached).
        term_mask: [N, S+1] bool, True where example i has a token in term k.
    """

    losses: torch.Tensor
    term_losses: torch.Tensor
    rewards: torch.Tensor
    kl: torch.Tensor
    term_mask: torch.Tensor


def _reference_points(kl_logratios: torch.Tensor, kl_counts: torch.Tensor) -> torch.Tensor:
    """z0_k: [K, S+1] log-ratios of the mismatched rows and their token counts -> [S+1], averaged where present."""
    present = (kl_counts > 0).to(kl_logratios.dtype)
    total = (kl_logratios * present).sum(0)
    return (total / present.sum(0).clamp(min=1)).clamp(min=0).detach()


def _check_inputs(
    examples: dict[str, torch.Tensor], kl_rows: dict[str, torch.Tensor], desirable: torch.Tensor, weights: torch.Tensor
) -> None:
    """One [N, S+1] shape for ``examples``, one [K, S+1] (K >= 1) for ``kl_rows``, [N] ``desirable``, [S+1] weights.

    Raises:
        ValueError: naming every argument's shape, or K = 0.
    """
    first, kl_first = examples["policy_logps"], kl_rows["kl_policy_logps"]
    terms = first.shape[-1] if first.dim() == 2 else -1
    shapes = {name: tuple(t.shape) for name, t in {**examples, **kl_rows}.items()}
    if (
        len({shapes[name] for name in examples}) != 1
        or len({shapes[name] for name in kl_rows}) != 1
        or kl_first.dim() != 2
        or kl_first.shape[-1] != terms
        or tuple(desirable.shape) != (first.shape[0],)
        or tuple(weights.shape) != (terms,)
    ):
        shapes.update(desirable=tuple(desirable.shape), weights=tuple(weights.shape))
        raise ValueError(f"segment_kto_loss: inconsistent shapes {shapes}")
    if kl_first.shape[0] == 0:
        raise ValueError("segment_kto_loss needs at least one mismatched row to estimate z0; got K = 0")


def segment_kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    counts: torch.Tensor,
    desirable: torch.Tensor,
    kl_policy_logps: torch.Tensor,
    kl_ref_logps: torch.Tensor,
    kl_counts: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> SegmentKTOOutput:
    """The loss of the module docstring, one value per example, not reduced.

    Args:
        policy_logps: [N, S+1] summed log pi per example and term.
        ref_logps: [N, S+1] the same under the reference.
        counts: [N, S+1] tokens per example and term (0: the segment is absent).
        desirable: [N] bool.
        kl_policy_logps: [K, S+1] of the mismatched (prompt, completion) rows (K >= 1).
        kl_ref_logps: [K, S+1] the same under the reference.
        kl_counts: [K, S+1] their token counts.
        weights: [S+1] term weights.
        beta: inverse temperature (> 0).
        desirable_weight: w_d (>= 0).
        undesirable_weight: w_u (>= 0).

    Raises:
        ValueError: on shapes that disagree (naming them), K = 0, beta <= 0 or a negative class weight.
    """
    _check_inputs(
        {"policy_logps": policy_logps, "ref_logps": ref_logps, "counts": counts},
        {"kl_policy_logps": kl_policy_logps, "kl_ref_logps": kl_ref_logps, "kl_counts": kl_counts},
        desirable,
        weights,
    )
    if not beta > 0:
        raise ValueError(f"segment_kto_loss: beta must be positive; got {beta!r}")
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError(
            f"segment_kto_loss: class weights must be >= 0; got {desirable_weight!r}, {undesirable_weight!r}"
        )

    kl = _reference_points(kl_policy_logps - kl_ref_logps, kl_counts)
    logratios = policy_logps - ref_logps
    desirable_terms = desirable_weight * (1.0 - torch.sigmoid(beta * (logratios - kl)))
    undesirable_terms = undesirable_weight * (1.0 - torch.sigmoid(beta * (kl - logratios)))
    raw = torch.where(desirable.unsqueeze(-1), desirable_terms, undesirable_terms)
    term_mask = counts > 0
    term_losses = torch.where(term_mask, raw, torch.zeros_like(raw))
    losses = (term_losses * weights).sum(dim=-1)
    return SegmentKTOOutput(losses, term_losses, beta * logratios.detach(), kl, term_mask)
