"""pool_segments: hand-computed values, a naive loop reference, the whole = sum of segments identity, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hipo.models.pooling import paired_tail_sums, pool_segments


def naive_pool(logps, segment_ids, sequence_ids, num_sequences, num_segments):
    """Reference: a Python loop over every token."""
    sums = torch.zeros(num_sequences, num_segments + 1, dtype=torch.float64)
    counts = torch.zeros(num_sequences, num_segments + 1, dtype=torch.long)
    for r in range(logps.shape[0]):
        for t in range(logps.shape[1]):
            k, n = int(segment_ids[r, t]), int(sequence_ids[r, t])
            if k < 0:
                continue
            if k < num_segments:
                sums[n, k] += float(logps[r, t])
                counts[n, k] += 1
            sums[n, num_segments] += float(logps[r, t])
            counts[n, num_segments] += 1
    return sums, counts


def test_hand_computed_packed_row():
    """One packed row with two sequences, S = 2.

    tokens:   t0   t1   t2   t3   t4   t5   t6   pad
    seq:       0    0    0    0    1    1    1   -1
    seg:      -1    0    1    2   -1    1    1   -1
    logp:      .  -1.0 -2.0 -0.5   .  -3.0 -0.25  .
    seq 0: seg0 = -1.0 (1), seg1 = -2.0 (1), whole = -1 - 2 - 0.5 = -3.5 (3; the id-2 token counts only there)
    seq 1: seg0 = 0 (0), seg1 = -3.25 (2), whole = -3.25 (2)
    """
    logps = torch.tensor([[9.0, -1.0, -2.0, -0.5, 9.0, -3.0, -0.25, 9.0]])  # 9.0 where unscored: must be ignored
    seg = torch.tensor([[-1, 0, 1, 2, -1, 1, 1, -1]])
    seq = torch.tensor([[0, 0, 0, 0, 1, 1, 1, -1]])
    out = pool_segments(logps, seg, seq, num_sequences=2, num_segments=2)
    torch.testing.assert_close(out.sums, torch.tensor([[-1.0, -2.0, -3.5], [0.0, -3.25, -3.25]]))
    assert out.counts.tolist() == [[1, 1, 3], [0, 2, 2]]
    assert out.counts.dtype == torch.long


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 4),
    length=st.integers(1, 9),
    num_sequences=st.integers(1, 5),
    num_segments=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_matches_naive_loop(rows, length, num_sequences, num_segments, seed):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(rows, length, generator=g, dtype=torch.float64) * 5
    seg = torch.randint(-1, num_segments + 1, (rows, length), generator=g)
    seq = torch.randint(0, num_sequences, (rows, length), generator=g)
    seq = torch.where(seg < 0, torch.full_like(seq, -1), seq)  # unscored tokens may carry -1 (padding)
    out = pool_segments(logps, seg, seq, num_sequences, num_segments)
    sums, counts = naive_pool(logps, seg, seq, num_sequences, num_segments)
    torch.testing.assert_close(out.sums, sums)
    assert torch.equal(out.counts, counts)


def test_segments_add_up_to_whole_when_every_token_is_in_a_segment():
    g = torch.Generator().manual_seed(1)
    logps = -torch.rand(3, 10, generator=g)
    seg = torch.randint(-1, 3, (3, 10), generator=g)  # ids -1..2 with S = 3: never the "outside" id 3
    seq = torch.arange(3)[:, None].expand(3, 10).clone()
    out = pool_segments(logps, seg, seq, 3, 3)
    torch.testing.assert_close(out.sums[:, :3].sum(1), out.sums[:, 3])
    assert torch.equal(out.counts[:, :3].sum(1), out.counts[:, 3])


def test_gradient_of_each_cell_is_its_token_indicator():
    """d(sum of cell (n, k))/d logp[r, t] = 1 iff token (r, t) pools into that cell."""
    logps = torch.zeros(1, 5, requires_grad=True)
    seg = torch.tensor([[-1, 0, 1, 1, 2]])
    seq = torch.tensor([[0, 0, 0, 0, 0]])
    out = pool_segments(logps, seg, seq, 1, 2)
    (grad,) = torch.autograd.grad(out.sums[0, 1], logps, retain_graph=True)
    assert grad.tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0]]
    (grad,) = torch.autograd.grad(out.sums[0, 2], logps)
    assert grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]


def test_bf16_input_is_accumulated_in_fp32():
    """300 tokens of log-prob -1.01: bf16 accumulation would round the count (>256) and the sum."""
    logps = torch.full((1, 301), -1.01, dtype=torch.bfloat16)
    seg = torch.zeros(1, 301, dtype=torch.long)
    seg[0, 0] = -1
    out = pool_segments(logps, seg, torch.zeros_like(seg), 1, 1)
    assert out.counts.tolist() == [[300, 300]]
    assert out.sums.dtype == torch.float32
    expected = 300 * float(torch.tensor(-1.01, dtype=torch.bfloat16))
    assert abs(float(out.sums[0, 1]) - expected) < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segment_ids": torch.zeros(2, 3, dtype=torch.long)}, "segment_ids has shape"),
        ({"sequence_ids": torch.zeros(2, 3, dtype=torch.long)}, "sequence_ids has shape"),
        ({"segment_ids": torch.zeros(2, 4)}, "segment_ids must be an integer"),
        ({"token_logps": torch.zeros(2, 4, dtype=torch.long)}, "token_logps must be a float"),
        ({"token_logps": torch.zeros(8)}, "token_logps must be"),
        ({"segment_ids": torch.full((2, 4), 3)}, "segment_ids range"),
        ({"segment_ids": torch.full((2, 4), -2)}, "segment_ids range"),
        ({"sequence_ids": torch.full((2, 4), 5)}, "sequence_ids of scored tokens"),
        ({"sequence_ids": torch.full((2, 4), -1)}, "sequence_ids of scored tokens"),
    ],
)
def test_bad_input_names_the_tensor(kwargs, message):
    args = {
        "token_logps": torch.zeros(2, 4),
        "segment_ids": torch.zeros(2, 4, dtype=torch.long),
        "sequence_ids": torch.zeros(2, 4, dtype=torch.long),
        "num_sequences": 2,
        "num_segments": 2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pool_segments(**args)


def naive_tails(logps, segment_ids, sequence_ids, num_sequences, num_segments):
    """Reference for paired_tail_sums: tokens in row-major order, a running count per cell, the tokens at or past
    the cell's shared length (the smaller count of the pair's two sides) summed."""
    _, counts = naive_pool(logps, segment_ids, sequence_ids, num_sequences, num_segments)
    half = num_sequences // 2
    tails = torch.zeros(num_sequences, num_segments + 1, dtype=torch.float64)
    seen = torch.zeros_like(counts)
    for r in range(logps.shape[0]):
        for t in range(logps.shape[1]):
            k, n = int(segment_ids[r, t]), int(sequence_ids[r, t])
            if k < 0:
                continue
            partner = n + half if n < half else n - half
            for cell in ([k] if k < num_segments else []) + [num_segments]:
                if seen[n, cell] >= min(counts[n, cell], counts[partner, cell]):
                    tails[n, cell] += float(logps[r, t])
                seen[n, cell] += 1
    return tails


def test_tails_hand_computed_pair():
    """Chosen (seq 0): Mt tokens -1, -2, -3, then an Ra token -4; rejected (seq 1): one Mt token -5, Ra -6, -7.
    Shared lengths: Mt min(3, 1) = 1, Ra min(1, 2) = 1, whole min(4, 3) = 3. Tails: chosen Mt -2 - 3 = -5, Ra 0,
    whole (its 4th token) -4; rejected Mt 0, Ra -7, whole 0 (3 tokens, all shared)."""
    logps = torch.tensor([[9.0, -1.0, -2.0, -3.0, -4.0], [9.0, -5.0, -6.0, -7.0, 9.0]])
    seg = torch.tensor([[-1, 0, 0, 0, 1], [-1, 0, 1, 1, -1]])
    seq = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 1, -1]])
    pooled = pool_segments(logps, seg, seq, num_sequences=2, num_segments=2)
    tails = paired_tail_sums(logps, seg, seq, pooled.counts, num_segments=2)
    torch.testing.assert_close(tails, torch.tensor([[-5.0, 0.0, -4.0], [0.0, -7.0, 0.0]]))


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 4),
    length=st.integers(1, 9),
    pairs=st.integers(1, 3),
    num_segments=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_tails_match_naive_loop(rows, length, pairs, num_segments, seed):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(rows, length, generator=g, dtype=torch.float64) * 5
    seg = torch.randint(-1, num_segments + 1, (rows, length), generator=g)
    seq = torch.randint(0, 2 * pairs, (rows, length), generator=g)
    seq = torch.where(seg < 0, torch.full_like(seq, -1), seq)
    pooled = pool_segments(logps, seg, seq, 2 * pairs, num_segments)
    tails = paired_tail_sums(logps, seg, seq, pooled.counts, num_segments)
    torch.testing.assert_close(tails, naive_tails(logps, seg, seq, 2 * pairs, num_segments))
    with pytest.raises(ValueError, match=r"\[2B, S\+1\]"):
        paired_tail_sums(logps, seg, seq, pooled.counts[:1], num_segments)
