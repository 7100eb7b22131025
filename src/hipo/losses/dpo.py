"""Direct Preference Optimization and its pairwise variants, as pure functions of summed log-probs.

For a pair (x, y_w, y_l) with policy pi and frozen reference pi_ref, the log-ratio difference is

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]

and every variant is a per-pair function l(h) of it (``preference_term_loss``), shared with the segment-level HiPO
loss, which applies it to each segment's h_k:

* ``sigmoid`` (DPO, Rafailov et al. 2023):            l = -log sigma(beta h)
  with label smoothing eps (conservative DPO, cDPO):   l = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)
* ``ipo`` (Azar et al. 2024):                         l = (h - 1 / (2 beta))^2
* ``hinge`` (SLiC, Zhao et al. 2023):                 l = relu(1 - beta h)
* ``robust`` (rDPO, Chowdhury et al. 2024), eps = the assumed label-flip rate:
      l = [(1 - eps) (-log sigma(beta h)) - eps (-log sigma(-beta h))] / (1 - 2 eps)
  an unbiased estimate of the clean DPO loss: (1 - eps) l(h) + eps l(-h) = -log sigma(beta h).

Sums (not length-averaged log-probs) enter h for every variant, as in the papers' equations; TRL's IPO averages over
tokens instead. Label smoothing only has a meaning for ``sigmoid`` and ``robust``; other variants refuse it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

VARIANTS: tuple[str, ...] = ("sigmoid", "ipo", "hinge", "robust")


class DPOOutput(NamedTuple):
    """Per-pair DPO results.

    Attributes:
        losses: [B] per-pair loss (not reduced).
        chosen_rewards: [B] implicit reward beta * (log pi - log pi_ref) of the chosen response, detached.
        rejected_rewards: [B] the same for the rejected response, detached.
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def check_variant(variant: str, beta: float, label_smoothing: float) -> None:
    """Validates a (variant, beta, label_smoothing) setting.

    Raises:
        ValueError: unknown variant, beta <= 0 (or not finite), or a label smoothing outside the variant's range
            (sigmoid: [0, 0.5]; robust: [0, 0.5); ipo and hinge: only 0).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    if not (beta > 0 and beta < float("inf")):
        raise ValueError(f"beta must be a positive finite number; got {beta!r}")
    if variant == "sigmoid" and not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing for variant 'sigmoid' (cDPO) must lie in [0, 0.5]; got {label_smoothing!r}")
    if variant == "robust" and not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing (flip rate) of 'robust' must lie in [0, 0.5); got {label_smoothing!r}")
    if variant in ("ipo", "hinge") and label_smoothing != 0.0:
        raise ValueError(f"label_smoothing is not defined for variant {variant!r}; got {label_smoothing!r}")


def preference_term_loss(
    logratio_diff: torch.Tensor, beta: float, variant: str = "sigmoid", label_smoothing: float = 0.0
) -> torch.Tensor:
    """The per-term loss l(h) of the module docstring, elementwise.

    Args:
        logratio_diff: h, any shape: chosen log-ratio minus rejected log-ratio (policy minus reference).
        beta: the inverse temperature (IPO's tau).
        variant: one of ``VARIANTS``.
        label_smoothing: cDPO smoothing (``sigmoid``) or assumed flip rate (``robust``).

    Returns:
        Loss with the shape of ``logratio_diff``.
    """
    check_variant(variant, beta, label_smoothing)
    h = logratio_diff
    if variant == "ipo":
        return (h - 1.0 / (2.0 * beta)) ** 2
    if variant == "hinge":
        return torch.relu(1.0 - beta * h)
    eps = label_smoothing
    loss_right = -F.logsigmoid(beta * h)  # loss if the label is right
    loss_flipped = -F.logsigmoid(-beta * h)  # loss if the label is flipped
    if variant == "sigmoid":
        return (1.0 - eps) * loss_right + eps * loss_flipped if eps > 0 else loss_right
    return ((1.0 - eps) * loss_right - eps * loss_flipped) / (1.0 - 2.0 * eps)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    variant: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> DPOOutput:
    """Pairwise preference loss l(h) of the module docstring, one value per pair, not reduced.

    Args:
        policy_chosen_logps: [B] summed log pi(y_w | x).
        policy_rejected_logps: [B] summed log pi(y_l | x).
        ref_chosen_logps: [B] summed log pi_ref(y_w | x) (no gradient expected).
        ref_rejected_logps: [B] summed log pi_ref(y_l | x).
        beta: inverse temperature (> 0).
        variant: ``sigmoid`` | ``ipo`` | ``hinge`` | ``robust``.
        label_smoothing: cDPO eps for ``sigmoid``, flip rate for ``robust``; 0 otherwise.

    Returns:
        ``DPOOutput`` of [B] tensors; rewards are beta * (policy - reference), detached.

    Raises:
        ValueError: if the four inputs are not 1-D of one shape, or the setting is invalid.
    """
    inputs = {
        "policy_chosen_logps": policy_chosen_logps,
        "policy_rejected_logps": policy_rejected_logps,
        "ref_chosen_logps": ref_chosen_logps,
        "ref_rejected_logps": ref_rejected_logps,
    }
    shapes = {name: tuple(t.shape) for name, t in inputs.items()}
    if policy_chosen_logps.dim() != 1 or len(set(shapes.values())) != 1:
        raise ValueError(f"dpo_loss expects four 1-D [B] tensors of one shape; got {shapes}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = preference_term_loss(chosen_logratios - rejected_logratios, beta, variant, label_smoothing)
    return DPOOutput(losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach())
