"""Per-token log-probs of the tokens a batch scores, without full-vocabulary logits for the whole batch.

The decoder runs once to give last hidden states [R, T, H]. Only the N rows that predict a scored token (position
t-1 predicts token t) are gathered, and the log-prob ``logit[target] - logsumexp(logits)`` is computed in chunks of
``chunk_size`` rows against the LM head, in fp32 even when the model runs in bf16. In training each chunk is
wrapped in non-reentrant activation checkpointing, so backward keeps only the [N, H] hidden rows and recomputes one
chunk's [chunk_size, V] logits at a time, instead of holding [N, V] fp32 logits (N x V x 4 bytes: 8k tokens x 152k
vocab = 5 GB) until backward.

Packed rows (``batch.packed``) hold several sequences; attention must stay inside each one. transformers 5.x
derives a block-diagonal causal mask from ``position_ids`` when ``attention_mask`` is None and no KV cache is used
(``masking_utils.find_packed_sequence_indices``: a new sequence starts wherever the position does not increase by
1) for eager/sdpa/flex, and flash-attention derives varlen ``cu_seqlens`` from ``position_ids`` for a single
flattened row. :func:`token_logps` relies on that (checking that the positions imply exactly the batch's sequence
boundaries), flattens packed rows to one row for flash attention, and can instead pass an explicit 4D block-causal
mask built from ``sequence_ids`` (``packed_attention="mask"``) for models whose code does not detect packing.
"""

from __future__ import annotations

from typing import Literal, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hipo.data.batch import TokenBatch
from hipo.losses.types import SegmentLogps
from hipo.models.pooling import paired_tail_sums, pool_segments

PackedAttention = Literal["position_ids", "mask"]

# Version of the log-prob computation, part of the reference cache's key (hipo.training.ref_cache): BUMP IT whenever
# a change here (or in pooling) changes the values computed for the same model and batch, so that caches written by
# the old code are not read as if the new code had computed them.
LOGPROBS_VERSION = 1


# What this module calls on a model beyond ``nn.Module``, each only after checking with ``hasattr`` (``nn.Module``'s
# ``__getattr__`` types any other attribute as ``Tensor | Module``, so mypy cannot narrow by ``hasattr``).
class _PeftWrapper(Protocol):
    """A ``PeftModel``."""

    def get_base_model(self) -> nn.Module: ...


class _CausalLM(Protocol):
    """A transformers ``PreTrainedModel`` with an LM head."""

    def get_decoder(self) -> nn.Module: ...

    def get_output_embeddings(self) -> nn.Module | None: ...


class _HasInputEmbeddings(Protocol):
    """A transformers model or decoder stack (or a ``PeftModel``, which forwards the call to the model it wraps)."""

    def get_input_embeddings(self) -> nn.Module: ...


def _base_model(model: nn.Module) -> nn.Module:
    """The model a ``PeftModel`` wraps; any other model itself."""
    return cast(_PeftWrapper, model).get_base_model() if hasattr(model, "get_base_model") else model


def _embedding_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the input embedding table of a transformers model or decoder stack."""
    weight = cast(_HasInputEmbeddings, model).get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor), "an input embedding module's weight is a tensor (parameter)"
    return weight.dtype


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (input ids -> last hidden states) and the LM head of a causal LM, PEFT-wrapped or not.

    For a ``PeftModel`` these are the modules of the wrapped model with the adapter layers injected, so adapters
    apply (and ``disable_adapter()`` disables them) exactly as in the model's own forward.
    """
    base = _base_model(model)
    decoder = cast(_CausalLM, base).get_decoder() if hasattr(base, "get_decoder") else getattr(base, "model", None)
    head = cast(_CausalLM, base).get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None:
        raise TypeError(f"{type(base).__name__} is not a causal LM with a decoder and an output head")
    return decoder, head


def check_token_batch(batch: TokenBatch) -> None:
    """Raise ValueError (naming the field) unless the batch's [R, T] tensors agree and every scored token has a left
    context in its own sequence (not the first column; the previous token belongs to the same sequence)."""
    shape = batch.input_ids.shape
    if batch.input_ids.dim() != 2:
        raise ValueError(f"TokenBatch.input_ids must be [R, T], got shape {tuple(shape)}")
    for name in ("attention_mask", "position_ids", "segment_ids", "sequence_ids"):
        value = getattr(batch, name)
        if value.shape != shape:
            raise ValueError(f"TokenBatch.{name} has shape {tuple(value.shape)}, input_ids {tuple(shape)}")
    scored = batch.segment_ids >= 0
    if shape[1] == 0 or not bool(scored.any()):
        return
    if bool(scored[:, 0].any()):
        raise ValueError("TokenBatch.segment_ids scores a token in column 0, which has no left context")
    same_sequence = batch.sequence_ids[:, 1:] == batch.sequence_ids[:, :-1]
    if bool((scored[:, 1:] & ~same_sequence).any()):
        raise ValueError("TokenBatch.segment_ids scores the first token of a sequence (its left neighbour is another)")
    if bool((scored & (batch.attention_mask == 0)).any()):
        raise ValueError("TokenBatch.segment_ids scores a padding token (attention_mask 0)")


def check_packed_positions(batch: TokenBatch) -> None:
    """Raise ValueError unless, between neighbouring real tokens, a sequence boundary (``sequence_ids`` change) falls
    exactly where ``position_ids`` do not increase by 1: the rule transformers uses to rebuild packed attention."""
    real = (batch.attention_mask[:, 1:] != 0) & (batch.attention_mask[:, :-1] != 0)
    boundary = batch.sequence_ids[:, 1:] != batch.sequence_ids[:, :-1]
    restart = (batch.position_ids[:, 1:] - batch.position_ids[:, :-1]) != 1
    bad = real & (boundary != restart)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"TokenBatch.position_ids disagree with sequence_ids at row {row}, column {col + 1}: positions must "
            "restart (not increase by 1) exactly where a new sequence begins"
        )


def block_causal_mask(sequence_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D attention mask [R, 1, T, T]: query t sees key s iff s <= t and both belong to the same sequence.

    Padding tokens (sequence id -1) see only themselves, so no attention row is empty (no NaN from softmax).
    """
    length = sequence_ids.shape[1]
    positions = torch.arange(length, device=sequence_ids.device)
    causal = positions[None, :, None] >= positions[None, None, :]
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    padding = sequence_ids[:, :, None] < 0
    diagonal = positions[None, :, None] == positions[None, None, :]
    allowed = causal & same & (~padding | diagonal)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=sequence_ids.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def hidden_states(
    model: nn.Module, batch: TokenBatch, packed_attention: PackedAttention = "position_ids"
) -> torch.Tensor:
    """Last hidden states [R, T, H] of the decoder over ``batch`` (padding masked, packed rows kept apart)."""
    decoder, _ = decoder_and_head(model)
    rows, length = batch.input_ids.shape
    if not batch.packed:
        out = decoder(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        )
        return out.last_hidden_state
    if packed_attention == "mask":
        dtype = _embedding_dtype(decoder)
        mask = block_causal_mask(batch.sequence_ids, dtype)
        out = decoder(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids, use_cache=False)
        return out.last_hidden_state
    if packed_attention != "position_ids":
        raise ValueError(f"packed_attention must be 'position_ids' or 'mask', got {packed_attention!r}")
    check_packed_positions(batch)
    attn = str(getattr(getattr(decoder, "config", None), "_attn_implementation", ""))
    if "flash" in attn:  # flash-attention's varlen path reads packing from position_ids of ONE flattened row
        out = decoder(
            input_ids=batch.input_ids.reshape(1, -1), position_ids=batch.position_ids.reshape(1, -1), use_cache=False
        )
        return out.last_hidden_state.reshape(rows, length, -1)
    out = decoder(input_ids=batch.input_ids, attention_mask=None, position_ids=batch.position_ids, use_cache=False)
    return out.last_hidden_state


def _postprocess_logits(logits: torch.Tensor, config: object) -> torch.Tensor:
    """Model-specific logit transforms that a causal LM's forward applies after its head (scale, soft-capping)."""
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, int | float) and scale != 1:
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for bf16/fp16/fp32 models, fp64 for fp64 models (tests)."""
    return torch.promote_types(dtype, torch.float32)


def _chunk_logps(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, config: object) -> torch.Tensor:
    """[C] log p(target | hidden row) for a chunk: hidden [C, H], targets [C]; logits [C, V] in fp32 (or fp64)."""
    logits = head(hidden)
    logits = _postprocess_logits(logits.to(_accumulation_dtype(logits.dtype)), config)
    selected = logits.gather(-1, targets[:, None]).squeeze(-1)
    return selected - torch.logsumexp(logits, dim=-1)


def token_logps(
    model: nn.Module,
    batch: TokenBatch,
    chunk_size: int = 1024,
    checkpoint_chunks: bool | None = None,
    packed_attention: PackedAttention = "position_ids",
) -> torch.Tensor:
    """Log-prob of every scored token given the tokens before it in its sequence.

    Args:
        model: a causal LM (``PreTrainedModel`` or a ``PeftModel`` around one).
        batch: padded or packed :class:`TokenBatch`.
        chunk_size: rows of hidden states per LM-head chunk (peak extra memory ~ chunk_size x V x 4 bytes).
        checkpoint_chunks: recompute each chunk's logits in backward instead of keeping them; default: when
            gradients are being recorded.
        packed_attention: how packed rows are kept apart: ``"position_ids"`` (transformers' packing detection) or
            ``"mask"`` (explicit 4D block-causal mask, eager/sdpa only, O(R T^2) memory).

    Returns:
        [R, T] fp32 (fp64 for an fp64 model): ``out[r, t] = log p(input_ids[r, t] | earlier tokens of the same
        sequence)`` where ``segment_ids[r, t] >= 0``, and 0 elsewhere. Differentiable w.r.t. the model's trainable
        parameters.
    """
    if chunk_size < 1:
        raise ValueError(f"token_logps: chunk_size must be >= 1, got {chunk_size}")
    check_token_batch(batch)
    _, head = decoder_and_head(model)
    config = getattr(_base_model(model), "config", None)
    hidden = hidden_states(model, batch, packed_attention)  # [R, T, H]
    rows, cols = (batch.segment_ids >= 0).nonzero(as_tuple=True)  # [N] each
    out = torch.zeros(batch.input_ids.shape, dtype=_accumulation_dtype(hidden.dtype), device=hidden.device)
    if rows.numel() == 0:
        return out + 0.0 * hidden.sum()  # keeps the graph connected so backward() still runs
    predictors = hidden[rows, cols - 1]  # [N, H]: position t-1 predicts token t
    targets = batch.input_ids[rows, cols]  # [N]
    if checkpoint_chunks is None:
        checkpoint_chunks = torch.is_grad_enabled() and predictors.requires_grad
    pieces = []
    for start in range(0, predictors.shape[0], chunk_size):
        h, y = predictors[start : start + chunk_size], targets[start : start + chunk_size]
        if checkpoint_chunks:
            pieces.append(checkpoint(_chunk_logps, h, y, head, config, use_reentrant=False))
        else:
            pieces.append(_chunk_logps(h, y, head, config))
    return out.index_put((rows, cols), torch.cat(pieces))


def naive_token_logps(model: nn.Module, batch: TokenBatch, packed_attention: PackedAttention = "mask") -> torch.Tensor:
    """Reference implementation: full [R, T, V] logits from the model's own forward, fp32 log-softmax, gather.

    Memory O(R T V); for tests and benchmarks only. Packed rows use the explicit block-causal mask
    (``packed_attention="mask"``, default) or transformers' packing detection from position ids.

    Returns:
        [R, T] fp32 (fp64 for an fp64 model) with the same meaning as :func:`token_logps`.
    """
    check_token_batch(batch)
    if batch.packed and packed_attention == "mask":
        mask = block_causal_mask(batch.sequence_ids, _embedding_dtype(model))
    elif batch.packed and packed_attention == "position_ids":
        check_packed_positions(batch)
        mask = None
    elif batch.packed:
        raise ValueError(f"packed_attention must be 'position_ids' or 'mask', got {packed_attention!r}")
    else:
        mask = batch.attention_mask
    logits = model(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids, use_cache=False)
    logits = logits.logits
    logp = F.log_softmax(logits.to(_accumulation_dtype(logits.dtype)), dim=-1)  # [R, T, V]
    next_logp = logp[:, :-1].gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)  # [R, T-1]: predicts t from t-1
    full = torch.cat([torch.zeros_like(next_logp[:, :1]), next_logp], dim=1)
    return torch.where(batch.segment_ids >= 0, full, torch.zeros_like(full))


def sequence_segment_logps(
    model: nn.Module,
    batch: TokenBatch,
    chunk_size: int = 1024,
    packed_attention: PackedAttention = "position_ids",
    paired_tails: bool = False,
) -> SegmentLogps:
    """Per-sequence, per-segment log-prob sums and counts [N, S+1]: :func:`token_logps` then ``pool_segments``;
    with ``paired_tails`` (a paired batch) also LD-DPO's tails (:func:`~hipo.models.pooling.paired_tail_sums`)."""
    logps = token_logps(model, batch, chunk_size=chunk_size, packed_attention=packed_attention)
    pooled = pool_segments(logps, batch.segment_ids, batch.sequence_ids, batch.num_sequences, batch.num_segments)
    if not paired_tails:
        return pooled
    tails = paired_tail_sums(logps, batch.segment_ids, batch.sequence_ids, pooled.counts, batch.num_segments)
    return SegmentLogps(pooled.sums, pooled.counts, tails)
