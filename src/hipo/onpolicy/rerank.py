"""A trained policy's implicit rewards as a verifier: score K sampled answers of a problem, keep the best.

The implicit reward of a response under a policy trained by DPO-style losses is ``β (log π(y|x) − log π_ref(y|x))``;
HiPO's losses shape it per segment as well. :func:`response_logps` scores responses with the training code path
(one tokenization with offsets, ``hipo.models.logprobs``, pooling), the segments found by the segmenter (a response
it cannot segment gets the whole-response reward only); :func:`implicit_rewards` turns a policy's and its
reference's log-probs into rewards (the reference's, shared by every policy trained from it, is scored once). Two
scores:

* ``whole``: the whole response's reward (DPO's verifier);
* ``min_segment``: the lowest reward among the response's segments -- a response is as good as its worst part --
  falling back to ``whole`` for a response without segments.

:func:`best_of_k` is the accuracy of keeping, per problem, the sample with the highest score (ties: the first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hipo.data.collate import ResponseCollator, chosen_responses
from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmented import SegmentedPair, SegmentedResponse
from hipo.data.segmenters.base import Segmenter
from hipo.data.tokenize import PreferenceTokenizer
from hipo.losses.types import SegmentLogps
from hipo.models.logprobs import sequence_segment_logps

SCORES = ("whole", "min_segment")


@dataclass
class ResponseRewards:
    """Implicit rewards of N responses.

    Attributes:
        rewards: [N, S+1] ``β (log π − log π_ref)`` per segment, then the whole response.
        counts: [N, S+1] tokens of each cell (0: the response has no such segment).
    """

    rewards: torch.Tensor
    counts: torch.Tensor

    def score(self, kind: str) -> torch.Tensor:
        """[N] scores: ``whole`` or ``min_segment`` (see the module docstring)."""
        if kind == "whole":
            return self.rewards[:, -1]
        if kind != "min_segment":
            raise ValueError(f"score must be one of {SCORES}, got {kind!r}")
        segments = self.rewards[:, :-1].masked_fill(self.counts[:, :-1] == 0, float("inf"))
        lowest = segments.min(dim=1).values
        return torch.where(torch.isinf(lowest), self.rewards[:, -1], lowest)


def segmented_responses(segmenter: Segmenter, prompts: Sequence[str], texts: Sequence[str]) -> list[SegmentedPair]:
    """Each (prompt, text) as a single-response pair with the segmenter's spans (none when it finds none)."""
    pairs = []
    for index, (prompt, text) in enumerate(zip(prompts, texts, strict=True)):
        row = {segmenter.prompt_field: prompt, "chosen": text}
        try:
            response = segmenter.segment_response(row, "chosen", RowLocation("responses", index + 1))
        except SegmentationError:
            response = SegmentedResponse(text, ())
        pairs.append(SegmentedPair(prompt, response, None))
    return pairs


@torch.no_grad()
def response_logps(
    model: torch.nn.Module,
    tokenizer: PreferenceTokenizer,
    pairs: Sequence[SegmentedPair],
    batch_size: int = 16,
    chunk_size: int = 1024,
) -> SegmentLogps:
    """Log-prob sums and counts [N, S+1] of single responses (``pairs`` with ``rejected=None``) under ``model``, in
    eval mode (its mode is restored) and without gradients, in their order.

    Raises:
        ValueError: a response longer than the tokenizer's ``max_length`` allows (it would be cut or dropped).
    """
    tokenized, kept = tokenizer.tokenize_and_filter(list(pairs))
    if len(kept) != len(pairs):
        raise ValueError(f"{len(pairs) - len(kept)} responses do not fit max_length={tokenizer.max_length}")
    collate = ResponseCollator(int(tokenizer.tokenizer.pad_token_id), tokenizer.num_segments)
    examples = chosen_responses(tokenized)
    mode = model.training
    model.eval()
    sums, counts = [], []
    try:
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size])
            with torch.no_grad():
                logps = sequence_segment_logps(model, batch, chunk_size=chunk_size)
            sums.append(logps.sums)
            counts.append(logps.counts)
    finally:
        model.train(mode)
    return SegmentLogps(torch.cat(sums), torch.cat(counts))


def implicit_rewards(policy: SegmentLogps, reference: SegmentLogps, beta: float) -> ResponseRewards:
    """``β (log π − log π_ref)`` per segment and whole response, from the two models' log-probs of the same responses.

    Raises:
        ValueError: the two were computed on different tokens (counts differ).
    """
    if not torch.equal(policy.counts, reference.counts):
        raise ValueError("implicit_rewards: policy and reference log-probs of different tokens")
    return ResponseRewards(beta * (policy.sums - reference.sums), policy.counts)


def best_of_k(scores: torch.Tensor, correct: torch.Tensor) -> float:
    """Accuracy of the highest-scoring sample per problem: ``scores``, ``correct`` [P, K]."""
    if scores.shape != correct.shape or scores.dim() != 2:
        raise ValueError(f"best_of_k: scores {tuple(scores.shape)} and correct {tuple(correct.shape)} must be [P, K]")
    picked = scores.argmax(dim=1)
    return float(correct.gather(1, picked[:, None]).float().mean())
