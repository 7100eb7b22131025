"""Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on unpaired desirable / undesirable examples.

For an example (x, y) with implied reward r = log pi(y|x) - log pi_ref(y|x) and reference point

    z0 = max(0, mean_j [log pi(y'_j | x_j) - log pi_ref(y'_j | x_j)])   (detached)

estimated, as in the paper, on K mismatched (prompt, completion) pairs of the same batch (a biased but cheap estimate
of KL(pi || pi_ref); no gradient flows through it), the loss is

    desirable:    w_d * (1 - sigma(beta * (r - z0)))
    undesirable:  w_u * (1 - sigma(beta * (z0 - r)))
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class KTOOutput(NamedTuple):
    """Per-example KTO results.

    Attributes:
        losses: [N] per-example loss (not reduced).
        rewards: [N] beta * r, detached (the same scale as DPO's implicit rewards).
        kl: scalar z0 actually used: the clamped (>= 0), detached KL estimate.
    """

    losses: torch.Tensor
    rewards: torch.Tensor
    kl: torch.Tensor


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl_policy_logps: torch.Tensor,
    kl_ref_logps: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOOutput:
    """KTO loss of the module docstring, one value per example, not reduced.

    Args:
        policy_logps: [N] summed log pi(y|x) of the examples.
        ref_logps: [N] summed log pi_ref(y|x).
        desirable: [N] bool, True for desirable examples.
        kl_policy_logps: [K] summed log pi(y'|x) of mismatched pairs (K >= 1).
        kl_ref_logps: [K] summed log pi_ref(y'|x) of the same pairs.
        beta: inverse temperature (> 0).
        desirable_weight: w_d (>= 0).
        undesirable_weight: w_u (>= 0).

    Returns:
        ``KTOOutput``.

    Raises:
        ValueError: on shape or dtype mismatches, K = 0, beta <= 0 or a negative class weight.
    """
    if not beta > 0:
        raise ValueError(f"kto_loss: beta must be positive; got {beta!r}")
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError(
            f"kto_loss: class weights must be >= 0; got desirable_weight={desirable_weight!r}, "
            f"undesirable_weight={undesirable_weight!r}"
        )
    example_shapes = {
        "policy_logps": tuple(policy_logps.shape),
        "ref_logps": tuple(ref_logps.shape),
        "desirable": tuple(desirable.shape),
    }
    if policy_logps.dim() != 1 or len(set(example_shapes.values())) != 1:
        raise ValueError(f"kto_loss expects 1-D [N] example tensors of one shape; got {example_shapes}")
    if desirable.dtype != torch.bool:
        raise ValueError(f"kto_loss: desirable must be a bool tensor; got dtype {desirable.dtype}")
    kl_shapes = {"kl_policy_logps": tuple(kl_policy_logps.shape), "kl_ref_logps": tuple(kl_ref_logps.shape)}
    if kl_policy_logps.dim() != 1 or len(set(kl_shapes.values())) != 1:
        raise ValueError(f"kto_loss expects 1-D [K] KL tensors of one shape; got {kl_shapes}")
    if kl_policy_logps.numel() == 0:
        raise ValueError("kto_loss needs at least one mismatched (prompt, completion) pair to estimate z0; got K = 0")

    kl = (kl_policy_logps - kl_ref_logps).mean().clamp(min=0).detach()
    logratios = policy_logps - ref_logps
    desirable_losses = desirable_weight * (1.0 - torch.sigmoid(beta * (logratios - kl)))
    undesirable_losses = undesirable_weight * (1.0 - torch.sigmoid(beta * (kl - logratios)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    return KTOOutput(losses, beta * logratios.detach(), kl)
