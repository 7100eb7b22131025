"""Synthetic perf data: lengths follow the mix, segments are well formed, padded and packed hold the same."""

from __future__ import annotations

import numpy as np
import pytest

from hipo.data.collate import PairCollator
from hipo.data.tokenize import TokenizedPair, TokenizedSequence
from hipo.perf.config import MixConfig
from hipo.perf.random_pairs import sample_lengths, synthetic_batches, synthetic_pairs, useful_tokens
from hipo.training.ref_cache import sequence_signatures

REALISTIC = MixConfig(name="realistic")  # schema defaults are the realistic mix


def test_lognormal_lengths_match_the_mix() -> None:
    """Median of lognormal(log m, 0.7) is m (clipping at 32/1024 keeps it); 20k draws: within 3%."""
    rng = np.random.default_rng(0)
    responses = sample_lengths(REALISTIC, 20000, rng, prompt=False)
    prompts = sample_lengths(REALISTIC, 20000, rng, prompt=True)
    assert responses.min() >= 32 and responses.max() <= 1024 and prompts.min() >= 32 and prompts.max() <= 256
    assert abs(np.median(responses) - 300) < 9 and abs(np.median(prompts) - 128) < 4
    # Share above the 1024 cap: P(z > ln(1024/300)/0.7 = 1.754) = 4.0%; all of it lands exactly on the cap.
    assert abs(np.mean(responses == 1024) - 0.040) < 0.006
    # sigma: the log-lengths' interquartile range is 2 * 0.6745 * 0.7 = 0.944 (the quartiles are not clipped).
    q1, q3 = np.percentile(np.log(responses), [25, 75])
    assert abs((q3 - q1) - 0.944) < 0.03


def test_fixed_mix_is_exact_and_segments_are_well_formed() -> None:
    mix = MixConfig(name="fixed", kind="fixed", prompt_length=7, response_length=20)
    pairs = synthetic_pairs(mix, 5, num_segments=3, vocab_size=100, seed=1)
    for pair in pairs:
        assert np.array_equal(pair.chosen.input_ids[:7], pair.rejected.input_ids[:7])  # shared prompt
        for seq in (pair.chosen, pair.rejected):
            assert len(seq) == 27 and seq.prompt_length == 7
            assert (seq.segment_ids[:7] == -1).all()
            response = seq.segment_ids[7:]
            assert response[-1] == 3  # the end token, outside every named segment
            body = response[:-1]
            assert (np.diff(body) >= 0).all() and set(body.tolist()) == {0, 1, 2}  # 3 ordered, non-empty segments
            assert seq.input_ids.min() >= 3 and seq.input_ids.max() < 100


@pytest.mark.parametrize("paired", [True, False])
def test_padded_and_packed_batches_hold_the_same_sequences(paired: bool) -> None:
    pairs = synthetic_pairs(REALISTIC, 6, 3, 1000, seed=0)
    padded = synthetic_batches(pairs, 3, 3, paired, packed=False, pack_length=2048)
    packed = synthetic_batches(pairs, 3, 3, paired, packed=True, pack_length=2048)
    assert len(padded) == len(packed) == 2
    for a, b in zip(padded, packed, strict=True):
        assert a.packed is False and b.packed is True
        assert b.input_ids.shape[0] < a.input_ids.shape[0]  # several sequences per packed row
        assert b.num_real_tokens == a.num_real_tokens
        assert (sequence_signatures(a) == sequence_signatures(b)).all()
        assert useful_tokens(a) == useful_tokens(b)
        assert a.num_sequences == (6 if paired else 12)


def test_useful_tokens_counts_scored_example_tokens_only() -> None:
    """Chosen: 2 prompt + 3 scored; rejected: 2 prompt + 4 scored -> 7 (KL sequences are excluded separately)."""
    seq = lambda n: TokenizedSequence(  # noqa: E731
        np.arange(3, 5 + n, dtype=np.int32), np.array([-1, -1] + [0] * (n - 1) + [3], dtype=np.int8), 2
    )
    batch = PairCollator(pad_id=2, num_segments=3)([TokenizedPair(seq(3), seq(4), 0)])
    assert useful_tokens(batch) == 7
    batch.num_kl_sequences = 1  # pretend the second sequence is a KL sequence
    assert useful_tokens(batch) == 3
