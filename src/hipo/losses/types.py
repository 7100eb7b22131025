"""Types shared by the loss functions and the LightningModule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class SegmentLogps:
    """Per-sequence log-probabilities pooled by segment.

    Attributes:
        sums: [N, S+1] summed token log-probs per named segment; column S is the whole response.
        counts: [N, S+1] number of tokens pooled into each cell (0 = empty segment).
        tails: [N, S+1] the part of ``sums`` past each cell's shared length with its pair's other side (LD-DPO's
            verbose tokens; :func:`hipo.models.pooling.paired_tail_sums`), or None when not asked for.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    tails: torch.Tensor | None = None

    def rows(self, start: int, stop: int) -> SegmentLogps:
        """Sequences ``start..stop-1``."""
        tails = None if self.tails is None else self.tails[start:stop]
        return SegmentLogps(self.sums[start:stop], self.counts[start:stop], tails)

    def detach(self) -> SegmentLogps:
        tails = None if self.tails is None else self.tails.detach()
        return SegmentLogps(self.sums.detach(), self.counts.detach(), tails)


@dataclass
class LossOutput:
    """What a loss module returns for one batch.

    Attributes:
        loss: scalar to backpropagate (mean over examples plus any weight regularizer).
        per_example: [B] per-example loss before reduction.
        metrics: scalar tensors to log, keyed by name (e.g. ``reward_margin/Rq``, ``accuracy/whole``, ``weight/Mt``).
    """

    loss: torch.Tensor
    per_example: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class BatchCollective(Protocol):
    """What a loss needs from the processes of a DDP job to compute state defined over the whole batch."""

    rank: int

    def all_gather_sizes(self, rows: int) -> list[int]:
        """Every process's row count, in rank order."""
        ...

    def all_gather(self, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Every process's ``tensor`` ([rows_r, ...], rows given by ``sizes``) concatenated in rank order along dim 0;
        differentiable: the gradient reaching each slice flows back to the process that holds it."""
        ...

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over processes of ``tensor`` (no gradient)."""
        ...
