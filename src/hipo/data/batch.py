"""The tensor batch contract between collation, log-prob computation, pooling and losses.

A batch holds ``num_sequences`` token sequences laid out either padded (one sequence per row) or packed (several
sequences per row, no padding between them). For a paired batch of B pairs, sequences ``0..B-1`` are the chosen
responses and ``B..2B-1`` the rejected ones, pair ``i`` being sequences ``i`` and ``B + i``.

Per-token segment ids (``segment_ids``) use:
  * ``-1``: not scored (prompt, chat-template scaffolding before the response, padding);
  * ``0..S-1``: the token's text lies in configured segment ``k``;
  * ``S``: a response token outside every named segment (counts in the whole-response term only).
The first token of every sequence is always ``-1`` (it has no left context), so a packed row never scores a token
conditioned on another sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class TokenBatch:
    """Tensors for one step. R rows of length T.

    Attributes:
        input_ids: [R, T] token ids (padding = pad id).
        attention_mask: [R, T] 1 for real tokens, 0 for padding.
        position_ids: [R, T] positions, restarting at 0 for every sequence (also in packed rows).
        segment_ids: [R, T] segment id of each token (see module docstring).
        sequence_ids: [R, T] which sequence (0..num_sequences-1) each token belongs to; -1 for padding.
        example_ids: [P] dataset index of each pair (paired) or example (unpaired), for the reference cache.
        num_segments: S, the number of named segments.
        packed: whether rows hold several sequences.
        desirable: [N] bool, unpaired (KTO) batches only: whether sequence i is a desirable example.
        num_kl_sequences: unpaired batches only: sequences N..N+K-1 are mismatched (prompt, response) pairs used
            to estimate KTO's KL reference point; 0 when absent.
        nll_tokens: the token count a per-token NLL (SFT, a preference loss's NLL term) divides by: set by the
            training step under DDP to the mean over processes of their chosen tokens, so the averaged gradients
            are those of the mean over all processes' tokens; None: the batch's own count.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    segment_ids: torch.Tensor
    sequence_ids: torch.Tensor
    example_ids: torch.Tensor
    num_sequences: int
    num_segments: int
    packed: bool = False
    desirable: torch.Tensor | None = None
    num_kl_sequences: int = 0
    nll_tokens: float | None = None

    def to(self, device: torch.device | str) -> TokenBatch:
        """A copy with every tensor moved to ``device``."""
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return TokenBatch(**moved)

    @property
    def num_scored_tokens(self) -> int:
        """Number of response tokens that enter the loss (useful tokens)."""
        return int((self.segment_ids >= 0).sum())

    @property
    def num_real_tokens(self) -> int:
        """Number of non-padding tokens (prompt + response)."""
        return int(self.attention_mask.sum())
