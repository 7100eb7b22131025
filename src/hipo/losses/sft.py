"""Negative log-likelihood of responses: the SFT loss, and the NLL term added to preference losses (RPO).

Both are the per-token mean over a batch (TRL's SFT loss and its ``rpo_alpha`` term, a cross-entropy averaged over
every scored token of the batch): with ``s_i`` the summed log-probability of response ``i`` and ``n_i`` its token
count,

    NLL = - (Σ_i s_i) / (Σ_i n_i)

so a long response weighs in proportion to its length. Per example, ``-s_i / n_i`` (the mean over its own tokens).

Over several processes (DDP averages their gradients) the mean is the one over *every* process's tokens when each
process divides by ``num_tokens``, the mean over processes of their token counts: ``Σ_r (−Σ_i s_i^r) / n̄ / R =
−(Σ_r Σ_i s_i^r) / (Σ_r n^r)``, so DDP trains as one process with the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NLLOutput:
    """Per-token mean NLL of a batch of responses.

    Attributes:
        loss: scalar, ``-(Σ s_i) / (Σ n_i)`` (0 when the batch scores no token), or ``-(Σ s_i) / num_tokens``.
        batch_mean: scalar, ``-(Σ s_i) / (Σ n_i)``: this batch's own per-token mean (the logged metric).
        per_example: [N], ``-s_i / n_i`` (0 for a response without tokens).
    """

    loss: torch.Tensor
    batch_mean: torch.Tensor
    per_example: torch.Tensor


def nll_loss(logp_sums: torch.Tensor, counts: torch.Tensor, num_tokens: float | None = None) -> NLLOutput:
    """The per-token mean negative log-likelihood of N responses.

    Args:
        logp_sums: [N] summed token log-probabilities of each response (differentiable).
        counts: [N] number of scored tokens of each response.
        num_tokens: the token count the loss divides by (> 0; under DDP the mean over processes of their counts,
            see the module docstring); None: this batch's own, ``Σ n_i``.

    Returns:
        :class:`NLLOutput` (loss and per-example values, both differentiable).

    Raises:
        ValueError: shapes that are not [N] and equal; ``num_tokens`` <= 0.
    """
    if logp_sums.dim() != 1 or logp_sums.shape != counts.shape:
        raise ValueError(
            f"nll_loss: expected logp_sums and counts of shape [N]; got {tuple(logp_sums.shape)}, {tuple(counts.shape)}"
        )
    if num_tokens is not None and not num_tokens > 0:
        raise ValueError(f"nll_loss: num_tokens must be > 0; got {num_tokens!r}")
    tokens = counts.to(logp_sums.dtype)
    batch_mean = -logp_sums.sum() / tokens.sum().clamp(min=1)
    loss = batch_mean if num_tokens is None else -logp_sums.sum() / num_tokens
    per_example = -logp_sums / tokens.clamp(min=1)
    return NLLOutput(loss=loss, batch_mean=batch_mean.detach(), per_example=per_example)
