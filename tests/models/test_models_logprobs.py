"""token_logps / sequence_segment_logps on the tiny random Llama, checked against independent computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hipo.models.loading import enable_gradient_checkpointing
from hipo.models.logprobs import (
    block_causal_mask,
    naive_token_logps,
    sequence_segment_logps,
    token_logps,
)
from hipo.models.tiny import build_tiny_model
from tests.helpers.model_batches import packed_batch, padded_batch, random_sequences

S = 3
VOCAB = 49152


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=0)


@pytest.fixture(scope="module")
def sequences():
    return random_sequences(6, S, VOCAB, seed=3)


def test_single_sequence_whole_logp_equals_model_cross_entropy(model):
    """Whole-response log-prob = -(HF mean CE over the response labels) x (number of response tokens)."""
    prompt, response = [11, 523, 90, 7], [4001, 33, 871, 12000, 5]
    batch = padded_batch([(prompt, response, [0, 0, 1, 2, 2])], S)
    labels = torch.tensor([[-100] * len(prompt) + response])
    with torch.no_grad():
        loss = model(input_ids=batch.input_ids, labels=labels).loss
        out = sequence_segment_logps(model, batch, chunk_size=2)
    torch.testing.assert_close(out.sums[0, S], -loss * len(response), rtol=1e-5, atol=1e-5)
    assert out.counts[0].tolist() == [2, 1, 2, 5]


def test_padded_batch_matches_per_token_cross_entropy(model, sequences):
    """Per-row sum of CrossEntropy(reduction='none') on shifted logits, prompt and padding labels = -100."""
    batch = padded_batch(sequences, S)
    labels = torch.where(batch.segment_ids >= 0, batch.input_ids, torch.full_like(batch.input_ids, -100))
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        ce = F.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="none"
        ).reshape(len(sequences), -1)
        out = sequence_segment_logps(model, batch, chunk_size=7)
    torch.testing.assert_close(out.sums[:, S], -ce.sum(1), rtol=1e-5, atol=1e-5)
    assert out.counts[:, S].tolist() == [len(r) for _, r, _ in sequences]


def test_segments_sum_to_whole_when_every_token_is_in_a_segment(model):
    seqs = random_sequences(5, S, VOCAB, seed=8, with_outside=False)
    with torch.no_grad():
        out = sequence_segment_logps(model, padded_batch(seqs, S))
    torch.testing.assert_close(out.sums[:, :S].sum(1), out.sums[:, S], rtol=1e-6, atol=1e-5)
    assert torch.equal(out.counts[:, :S].sum(1), out.counts[:, S])


@pytest.fixture(scope="module")
def model64():
    return build_tiny_model(seed=0).double()


@pytest.mark.slow  # naive and chunked passes with backward, in fp32 and fp64, per chunk size
@pytest.mark.parametrize("chunk_size", [1, 5, 64, 10_000])
@pytest.mark.parametrize("checkpoint_chunks", [True, False])
def test_chunked_equals_naive_values_and_gradients(model, model64, sequences, chunk_size, checkpoint_chunks):
    """Values in fp32 (the training dtype); gradients w.r.t. every parameter in fp64, where the two summation orders
    agree to ~1e-12 and a wrong gradient cannot hide behind rounding."""
    batch = padded_batch(sequences, S)
    with torch.no_grad():
        chunked = token_logps(model, batch, chunk_size=chunk_size)
        torch.testing.assert_close(chunked, naive_token_logps(model, batch), rtol=1e-5, atol=1e-5)
    assert chunked.dtype == torch.float32
    assert torch.all(chunked[batch.segment_ids < 0] == 0)
    assert torch.all(chunked[batch.segment_ids >= 0] < 0)

    weights = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(0))  # a generic loss
    params = list(model64.parameters())
    naive_grads = torch.autograd.grad((naive_token_logps(model64, batch) * weights).sum(), params)
    chunked = token_logps(model64, batch, chunk_size=chunk_size, checkpoint_chunks=checkpoint_chunks)
    chunked_grads = torch.autograd.grad((chunked * weights).sum(), params)
    for a, b in zip(chunked_grads, naive_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("packed_attention", ["position_ids", "mask"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_equals_padded(sequences, packed_attention, attn):
    model = build_tiny_model(seed=1)
    model.set_attn_implementation(attn)
    padded = padded_batch(sequences, S)
    packed = packed_batch(sequences, S, row_length=30)
    assert packed.input_ids.shape[0] < len(sequences)  # really packed: several sequences share a row
    with torch.no_grad():
        a = sequence_segment_logps(model, padded)
        b = sequence_segment_logps(model, packed, packed_attention=packed_attention)
    torch.testing.assert_close(b.sums, a.sums, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.counts, b.counts)


def test_packed_without_separation_would_differ(model, sequences):
    """Guard for the test above: a plain causal mask over a packed row (a 2D attention mask disables transformers'
    packing detection) lets later sequences attend to earlier ones, which changes their log-probs."""
    packed = packed_batch(sequences, S, row_length=30)
    with torch.no_grad():
        right = token_logps(model, packed)
        logits = model(
            input_ids=packed.input_ids, attention_mask=packed.attention_mask, position_ids=packed.position_ids
        )
        logp = torch.log_softmax(logits.logits, -1)[:, :-1].gather(-1, packed.input_ids[:, 1:, None])[..., 0]
        leaky = torch.where(packed.segment_ids[:, 1:] >= 0, logp, torch.zeros_like(logp))
    first = packed.sequence_ids[:, 1:] == packed.sequence_ids[:, :1]  # tokens of each row's first sequence
    torch.testing.assert_close(leaky[first], right[:, 1:][first], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(leaky[~first], right[:, 1:][~first], atol=1e-3)


def test_right_padding_does_not_change_log_probs(model, sequences):
    """A sequence alone (no padding) vs padded to 40 tokens with garbage pad ids next to longer sequences."""
    with torch.no_grad():
        alone = torch.cat([sequence_segment_logps(model, padded_batch([s], S)).sums for s in sequences])
        batch = padded_batch(sequences, S, pad_id=777, length=40)
        together = sequence_segment_logps(model, batch).sums
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_peft_wrapped_model(sequences):
    from hipo.models.lora import apply_lora

    policy = apply_lora(build_tiny_model(seed=2), r=4, dropout=0.0)
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # make the adapter do something
    batch = padded_batch(sequences, S)
    with torch.no_grad():
        torch.testing.assert_close(token_logps(policy, batch), naive_token_logps(policy, batch), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # bf16 matmuls are slow on CPUs without bf16 instructions
def test_bf16_is_close_to_fp32_and_returns_fp32(sequences):
    model32 = build_tiny_model(seed=0)
    model16 = build_tiny_model(seed=0).to(torch.bfloat16)
    batch = padded_batch(sequences, S)
    with torch.no_grad():
        a, b = token_logps(model32, batch), token_logps(model16, batch)
    assert b.dtype == torch.float32
    # bf16 has ~3 significant digits; the per-token log-probs are ~ -10.8 (random model, V = 49152).
    torch.testing.assert_close(b, a, rtol=2e-2, atol=5e-2)


def test_gradient_checkpointing_gives_the_same_gradients(sequences):
    plain, ckpt = build_tiny_model(seed=4).train(), build_tiny_model(seed=4).train()
    enable_gradient_checkpointing(ckpt)
    assert ckpt.is_activation_checkpointing
    batch = padded_batch(sequences, S)
    grads = []
    for m in (plain, ckpt):
        sequence_segment_logps(m, batch).sums.sum().backward()
        grads.append([p.grad for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_block_causal_mask_hand_checked():
    """Row: seq 0 (2 tokens), seq 1 (2 tokens), padding. Allowed (1) / blocked (0), query = row, key = column."""
    mask = block_causal_mask(torch.tensor([[0, 0, 1, 1, -1]]), torch.float32)
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]


def test_errors_name_the_field(model, sequences):
    batch = padded_batch(sequences, S)
    bad = padded_batch(sequences, S)
    bad.segment_ids[0, 0] = 0
    with pytest.raises(ValueError, match="column 0"):
        token_logps(model, bad)
    bad = padded_batch(sequences, S)
    bad.position_ids = bad.position_ids[:, :-1]
    with pytest.raises(ValueError, match="position_ids has shape"):
        token_logps(model, bad)
    packed = packed_batch(sequences, S, row_length=30)
    packed.position_ids[0] = torch.arange(30)  # no restart at the second sequence of row 0
    with pytest.raises(ValueError, match="position_ids disagree with sequence_ids at row 0"):
        token_logps(model, packed)
    with pytest.raises(ValueError, match="chunk_size"):
        token_logps(model, batch, chunk_size=0)


def test_no_scored_token_gives_zeros_and_a_connected_graph(model):
    batch = padded_batch([([5, 6, 7], [8], [0])], S)
    batch.segment_ids[:] = -1
    out = token_logps(model, batch)
    assert torch.equal(out.detach(), torch.zeros_like(out))
    out.sum().backward()  # does not raise
    model.zero_grad()
