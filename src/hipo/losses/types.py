"""Types shared by the loss functions and the LightningModule."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SegmentLogps:
    """Per-sequence log-probabilities pooled by segment.

    Attributes:
        sums: [N, S+1] summed token log-probs per named segment; column S is the whole response.
        counts: [N, S+1] number of tokens pooled into each cell (0 = empty segment).
    """

    sums: torch.Tensor
    counts: torch.Tensor

    def rows(self, start: int, stop: int) -> SegmentLogps:
        """Sequences ``start..stop-1``."""
        return SegmentLogps(self.sums[start:stop], self.counts[start:stop])

    def detach(self) -> SegmentLogps:
        return SegmentLogps(self.sums.detach(), self.counts.detach())


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
