"""Memory of chunked vs naive log-probs, measured (not assumed) on CPU.

Two exact, deterministic measures of a forward + backward step:
  * the largest tensor any op produces (a TorchDispatchMode sees every op output, including recomputation in
    backward);
  * the bytes autograd keeps alive between forward and backward (saved_tensors_hooks; distinct storages only).
Both are what bounds peak memory on a GPU: the naive path materializes [R, T, V] fp32 logits and keeps them (and
the log-softmax) for backward; the chunked path never holds more than [chunk, V] and saves only hidden rows.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hipo.models.logprobs import naive_token_logps, token_logps
from hipo.models.tiny import build_tiny_model
from tests.helpers.model_batches import padded_batch, random_sequences

VOCAB = 49152


class LargestOutput(TorchDispatchMode):
    """Records the size in bytes of the largest tensor produced by any aten op."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def measure(fn) -> tuple[int, int]:
    """(largest op output in bytes, bytes saved for backward) of ``fn().sum().backward()``."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with LargestOutput() as mode:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        out.sum().backward()
    return mode.largest, sum(saved.values())


@pytest.mark.slow  # peak-memory measurement
def test_chunked_log_probs_use_far_less_memory_than_naive():
    """R x T = 8 x 64 = 512 positions, V = 49152: naive logits are 512 x 49152 x 4 B = 100.7 MB; a chunk of 32 rows
    is 32 x 49152 x 4 B = 6.3 MB. The tied embedding / LM head weight (49152 x 64 x 4 B = 12.6 MB) and its gradient
    are the largest tensors of the chunked step. Measured: naive 100.7 MB largest / 119.0 MB saved; chunked 12.6 MB /
    5.8 MB; chunked without per-chunk checkpointing 12.6 MB / 81.5 MB (321 scored tokens x V x 4 B = 63 MB of it)."""
    model = build_tiny_model(seed=0).train()
    seqs = random_sequences(8, 3, VOCAB, seed=5, max_len=56)
    batch = padded_batch(seqs, 3, length=64)
    rows, length = batch.input_ids.shape
    logits_bytes = rows * length * VOCAB * 4
    weight_bytes = VOCAB * 64 * 4

    naive_largest, naive_saved = measure(lambda: naive_token_logps(model, batch))
    model.zero_grad()
    chunk_largest, chunk_saved = measure(lambda: token_logps(model, batch, chunk_size=32))
    model.zero_grad()
    _, unckpt_saved = measure(lambda: token_logps(model, batch, chunk_size=32, checkpoint_chunks=False))
    model.zero_grad()
    scored_logits_bytes = batch.num_scored_tokens * VOCAB * 4

    assert naive_largest >= logits_bytes
    assert naive_saved >= logits_bytes  # the full logits (or their log-softmax) wait for backward
    assert chunk_largest <= max(32 * VOCAB * 4, weight_bytes)
    assert chunk_saved < logits_bytes / 10
    assert chunk_largest * 7 < naive_largest
    # Why the chunks are checkpointed: without it every chunk's [chunk, V] fp32 logits wait for backward.
    assert unckpt_saved >= scored_logits_bytes
