"""Negative log-likelihood of responses: the SFT loss, and the NLL term added to preference losses (RPO).

Both are the per-token mean over a batch (TRL's SFT loss and its ``rpo_alpha`` term, a cross-entropy averaged over
every scored token of the batch): with ``s_i`` the summed log-probability of response ``i`` and ``n_i`` its token
count,

    NLL = - (Σ_i s_i) / (Σ_i n_i)

so a long response weighs in proportion to its length. Per example, ``-s_i / n_i`` (the mean over its own tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NLLOutput:
    """Per-token mean NLL of a batch of responses.

    Attributes:
        loss: scalar, ``-(Σ s_i) / (Σ n_i)`` (0 when the batch scores no token).
        per_example: [N], ``-s_i / n_i`` (0 for a response without tokens).
    """

    loss: torch.Tensor
    per_example: torch.Tensor


def nll_loss(logp_sums: torch.Tensor, counts: torch.Tensor) -> NLLOutput:
    """The per-token mean negative log-likelihood of N responses.

    Args:
        logp_sums: [N] summed token log-probabilities of each response (differentiable).
        counts: [N] number of scored tokens of each response.

    Returns:
        :class:`NLLOutput` (loss and per-example values, both differentiable).

    Raises:
        ValueError: shapes that are not [N] and equal.
    """
    if logp_sums.dim() != 1 or logp_sums.shape != counts.shape:
        raise ValueError(
            f"nll_loss: expected logp_sums and counts of shape [N]; got {tuple(logp_sums.shape)}, {tuple(counts.shape)}"
        )
    tokens = counts.to(logp_sums.dtype)
    loss = -logp_sums.sum() / tokens.sum().clamp(min=1)
    per_example = -logp_sums / tokens.clamp(min=1)
    return NLLOutput(loss=loss, per_example=per_example)
