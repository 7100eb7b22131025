"""The HiPO loss: one preference term per named segment plus the whole-response term, fused by weights.

With segments k = 0..S-1 (Rq, Mt, Ra by default) and the whole response as term S, for each pair

    h_k  = [log pi(y_w,k) - log pi_ref(y_w,k)] - [log pi(y_l,k) - log pi_ref(y_l,k)]
    loss = sum_{k=0..S} w_k * m_k * l(h_k)

where log pi(y_.,k) sums the log-probs of segment k's tokens (each conditioned on everything before it), l is a
variant of :mod:`hipo.losses.variants` applied to term k alone (a length-normalised variant divides each segment by
its own token count; a batch-wide one sorts each term's pairs among the pairs that have that term; a reference-free
one reads the policy's sums alone) and m_k the term mask below.

Empty segments. A term whose segment has no token on BOTH sides of a pair (count 0 for chosen and rejected) carries
no preference signal (h_k = 0 identically, a constant l(0) = log 2 for DPO), so m_k = 0: it contributes nothing to
that pair. The remaining weights are kept as they are, NOT renormalized over the present terms. Renormalizing would
inflate a pair's loss on its other terms exactly because one of its segments is missing (a pair without Rq would
put 0.25/0.75 more weight on Mt than a complete pair), so pairs with missing segments would pull harder on the
shared parameters, and with learned weights the mask would couple the weights' gradients. Unrenormalized, each
term's contribution is the same whether or not other segments exist, and a pair's loss never exceeds the full
weighted sum. A segment empty on ONE side only is kept: its h_k compares a present segment with nothing (log-prob 0),
which is a real preference between the two responses. ORPO, whose log odds of an empty segment are not defined,
keeps a term only where both sides have a token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from hipo.losses.variants import PairLogps, VariantOptions, variant_losses, variant_spec


class HiPOOutput(NamedTuple):
    """Per-pair HiPO results, S+1 terms (S segments, then the whole response).

    Attributes:
        losses: [B] weighted sum of the present terms per pair (not reduced).
        term_losses: [B, S+1] unweighted l(h_k) per pair and term; 0 where the term is absent.
        chosen_rewards: [B, S+1] beta * (log pi - log pi_ref) of the chosen response's segments, detached (beta *
            log pi for a reference-free variant).
        rejected_rewards: [B, S+1] the same for the rejected response, detached.
        term_mask: [B, S+1] bool, True where the term is present (a token on at least one side; ORPO: both).
    """

    losses: torch.Tensor
    term_losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    term_mask: torch.Tensor


def _check_shapes(
    inputs: dict[str, torch.Tensor],
    weights: torch.Tensor,
    chosen_counts: torch.Tensor | None,
    rejected_counts: torch.Tensor | None,
) -> None:
    """Checks :func:`hipo_loss`'s arguments: one [B, S+1] shape for ``inputs`` and the counts, [S+1] weights.

    Args:
        inputs: name -> [B, S+1] log-prob sums, ``policy_chosen_seg_logps`` first (it sets B and S+1).
        weights: [S+1] term weights.
        chosen_counts: [B, S+1] token counts of the chosen cells, or None.
        rejected_counts: [B, S+1] token counts of the rejected cells, or None (together with ``chosen_counts``).

    Raises:
        ValueError: only one of the counts given, or shapes that disagree (naming every argument's shape).
    """
    if (chosen_counts is None) != (rejected_counts is None):
        raise ValueError("hipo_loss: pass both chosen_counts and rejected_counts, or neither")
    shaped = dict(inputs)
    if chosen_counts is not None and rejected_counts is not None:
        shaped["chosen_counts"] = chosen_counts
        shaped["rejected_counts"] = rejected_counts
    shapes = {name: tuple(t.shape) for name, t in shaped.items()}
    first = shaped["policy_chosen_seg_logps"]
    if first.dim() != 2 or len(set(shapes.values())) != 1:
        raise ValueError(f"hipo_loss expects 2-D [B, S+1] tensors of one shape; got {shapes}")
    num_terms = first.shape[1]
    if tuple(weights.shape) != (num_terms,):
        raise ValueError(f"hipo_loss: weights must have shape ({num_terms},) = [S+1]; got {tuple(weights.shape)}")


def hipo_loss(
    policy_chosen_seg_logps: torch.Tensor,
    policy_rejected_seg_logps: torch.Tensor,
    ref_chosen_seg_logps: torch.Tensor | None,
    ref_rejected_seg_logps: torch.Tensor | None,
    weights: torch.Tensor,
    beta: float,
    chosen_counts: torch.Tensor | None = None,
    rejected_counts: torch.Tensor | None = None,
    variant: str | Sequence[str] = "sigmoid",
    label_smoothing: float | None = None,
    *,
    options: VariantOptions | None = None,
    bco_shift: torch.Tensor | None = None,
) -> HiPOOutput:
    """Segment-level preference loss of the module docstring, one value per pair, not reduced.

    Args:
        policy_chosen_seg_logps: [B, S+1] per-segment log-prob sums of the chosen responses; last column = whole.
        policy_rejected_seg_logps: [B, S+1] the same for the rejected responses.
        ref_chosen_seg_logps: [B, S+1] reference sums for the chosen responses; None for a reference-free variant.
        ref_rejected_seg_logps: [B, S+1] reference sums for the rejected responses; None with the chosen ones.
        weights: [S+1] term weights in the same order (may require grad: learned weights).
        beta: inverse temperature (> 0), shared by all terms.
        chosen_counts: [B, S+1] token counts of the chosen cells, or None (every term present).
        rejected_counts: [B, S+1] token counts of the rejected cells; given together with ``chosen_counts``.
        variant: the per-term variant, or a list combined with ``options.variant_weights`` (MPO).
        label_smoothing: eps of the variants that take one; None: each variant's default (EXO 1e-3, else 0).
        options: f-divergence, DiscoPOP's tau, SimPO's gamma, the combination's weights.
        bco_shift: [S+1] ``bco_pair``'s running reward mean per term (None: 0).

    Returns:
        ``HiPOOutput``.

    Raises:
        ValueError: on inconsistent shapes (naming them), only one of the counts given, or an invalid setting.
    """
    spec = variant_spec(beta, variant, label_smoothing, options)
    spec.check_references("hipo_loss", ref_chosen_seg_logps, ref_rejected_seg_logps)
    inputs = {
        "policy_chosen_seg_logps": policy_chosen_seg_logps,
        "policy_rejected_seg_logps": policy_rejected_seg_logps,
    }
    references = {"ref_chosen_seg_logps": ref_chosen_seg_logps, "ref_rejected_seg_logps": ref_rejected_seg_logps}
    inputs.update({name: t for name, t in references.items() if t is not None})
    _check_shapes(inputs, weights, chosen_counts, rejected_counts)
    pairs = PairLogps(
        policy_chosen_seg_logps,
        policy_rejected_seg_logps,
        ref_chosen_seg_logps if spec.needs_reference else None,
        ref_rejected_seg_logps if spec.needs_reference else None,
        chosen_counts,
        rejected_counts,
    )
    term_mask = pairs.term_mask(both_sides=spec.needs_both_sides)
    raw = variant_losses(pairs, spec, bco_shift)
    term_losses = torch.where(term_mask, raw, torch.zeros_like(raw))
    chosen_logratios, rejected_logratios = pairs.logratios()
    rewards = beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
    return HiPOOutput((term_losses * weights).sum(dim=-1), term_losses, *rewards, term_mask)
