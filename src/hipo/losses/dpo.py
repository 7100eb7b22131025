"""Direct Preference Optimization and its pairwise variants on the whole response, as pure functions of summed
log-probs.

For a pair (x, y_w, y_l) with policy pi and frozen reference pi_ref, DPO's loss is -log sigma(beta h) of the
log-ratio difference

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]

and every variant of :mod:`hipo.losses.variants` (IPO, hinge, robust, EXO, NCA, BCO, SPPO, AOT, APO, DiscoPOP, the
length-normalised and reference-free ones, f-divergences, weighted combinations) replaces that per-pair function.
The segment-level HiPO loss applies the same variants to each segment's term.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from hipo.losses.variants import PairLogps, VariantOptions, variant_losses, variant_spec


class DPOOutput(NamedTuple):
    """Per-pair DPO results.

    Attributes:
        losses: [B] per-pair loss (not reduced).
        chosen_rewards: [B] implicit reward beta * (log pi - log pi_ref) of the chosen response, detached (beta *
            log pi for a reference-free variant).
        rejected_rewards: [B] the same for the rejected response, detached.
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def _check_shapes(**inputs: torch.Tensor | None) -> None:
    """Raises ValueError unless the tensors given (not None) are all 1-D [B] of one shape."""
    shapes = {name: tuple(t.shape) for name, t in inputs.items() if t is not None}
    if len(set(shapes.values())) != 1 or any(len(shape) != 1 for shape in shapes.values()):
        raise ValueError(f"dpo_loss expects 1-D [B] tensors of one shape; got {shapes}")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
    variant: str | Sequence[str] = "sigmoid",
    label_smoothing: float | None = None,
    *,
    chosen_counts: torch.Tensor | None = None,
    rejected_counts: torch.Tensor | None = None,
    options: VariantOptions | None = None,
    bco_shift: torch.Tensor | None = None,
) -> DPOOutput:
    """Pairwise preference loss of a variant (:mod:`hipo.losses.variants`), one value per pair, not reduced.

    Args:
        policy_chosen_logps: [B] summed log pi(y_w | x).
        policy_rejected_logps: [B] summed log pi(y_l | x).
        ref_chosen_logps: [B] summed log pi_ref(y_w | x) (no gradient expected); None for a reference-free variant.
        ref_rejected_logps: [B] summed log pi_ref(y_l | x); None with ``ref_chosen_logps``.
        beta: inverse temperature (> 0).
        variant: a variant name, or a list of them combined with ``options.variant_weights`` (MPO).
        label_smoothing: eps of the variants that take one; None: each variant's default (EXO 1e-3, else 0).
        chosen_counts: [B] token counts of the chosen responses (length-normalised variants); None: 1.
        rejected_counts: [B] the same for the rejected responses.
        options: f-divergence, DiscoPOP's tau, SimPO's gamma, the combination's weights.
        bco_shift: [1] ``bco_pair``'s running reward mean delta (None: 0).

    Returns:
        ``DPOOutput`` of [B] tensors.

    Raises:
        ValueError: if the inputs are not 1-D of one shape, or the setting is invalid.
    """
    spec = variant_spec(beta, variant, label_smoothing, options)
    _check_shapes(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_counts=chosen_counts,
        rejected_counts=rejected_counts,
    )
    spec.check_references("dpo_loss", ref_chosen_logps, ref_rejected_logps)

    def column(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.unsqueeze(-1)

    pairs = PairLogps(
        policy_chosen_logps.unsqueeze(-1),
        policy_rejected_logps.unsqueeze(-1),
        column(ref_chosen_logps) if spec.needs_reference else None,
        column(ref_rejected_logps) if spec.needs_reference else None,
        column(chosen_counts),
        column(rejected_counts),
    )
    losses = variant_losses(pairs, spec, bco_shift)[:, 0]
    chosen_logratios, rejected_logratios = pairs.logratios()
    return DPOOutput(losses, beta * chosen_logratios[:, 0].detach(), beta * rejected_logratios[:, 0].detach())
