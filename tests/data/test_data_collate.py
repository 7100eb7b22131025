"""Collation (padded, packed, unpaired with KL sequences) and the length-grouped sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hipo.data.batch import TokenBatch
from hipo.data.collate import PairCollator, UnpairedCollator, kl_sequence, pack_rows, unpair
from hipo.data.samplers import DistributedLengthGroupedSampler, training_batch_sampler
from hipo.data.tokenize import TokenizedPair, TokenizedSequence

PAD = 0


def make_sequence(rng: np.random.Generator, prompt: int, response: int) -> TokenizedSequence:
    """Random ids 1..999; segments: -1 for the prompt, then nondecreasing ids in 0..3 for the response."""
    ids = rng.integers(1, 1000, prompt + response).astype(np.int32)
    segments = np.concatenate([np.full(prompt, -1), np.sort(rng.integers(0, 4, response))]).astype(np.int8)
    return TokenizedSequence(ids, segments, prompt)


def make_pairs(seed: int, n: int) -> list[TokenizedPair]:
    rng = np.random.default_rng(seed)
    return [
        TokenizedPair(
            make_sequence(rng, int(rng.integers(1, 8)), int(rng.integers(1, 12))),
            make_sequence(rng, int(rng.integers(1, 8)), int(rng.integers(1, 12))),
            100 + i,
        )
        for i in range(n)
    ]


def per_sequence(batch: TokenBatch) -> list[tuple[list[int], list[int], list[int]]]:
    """(ids, segments, positions) of each sequence, read back from the batch via sequence_ids."""
    out = []
    for s in range(batch.num_sequences):
        mask = batch.sequence_ids == s
        out.append(
            (batch.input_ids[mask].tolist(), batch.segment_ids[mask].tolist(), batch.position_ids[mask].tolist())
        )
    return out


def test_padded_layout_hand_example() -> None:
    """Pair 0: chosen [5,6,7] segs [-1,0,3], rejected [5,8] segs [-1,3] -> rows of width 3, rejected padded once."""
    chosen = TokenizedSequence(np.array([5, 6, 7], np.int32), np.array([-1, 0, 3], np.int8), 1)
    rejected = TokenizedSequence(np.array([5, 8], np.int32), np.array([-1, 3], np.int8), 1)
    batch = PairCollator(pad_id=PAD, num_segments=3)([TokenizedPair(chosen, rejected, 42)])
    assert batch.input_ids.tolist() == [[5, 6, 7], [5, 8, PAD]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 1, 0]]
    assert batch.segment_ids.tolist() == [[-1, 0, 3], [-1, 3, -1]]
    assert batch.sequence_ids.tolist() == [[0, 0, 0], [1, 1, -1]]
    assert batch.example_ids.tolist() == [42] and batch.num_sequences == 2 and not batch.packed
    assert batch.num_scored_tokens == 3 and batch.num_real_tokens == 5


def test_pack_rows_first_fit_decreasing_hand_example() -> None:
    """Lengths [4, 7, 3, 6, 12] into 10: order 12, 7, 6, 4, 3 -> [12] alone, [7, 3], [6, 4]."""
    assert pack_rows([4, 7, 3, 6, 12], 10) == [[4], [1, 2], [3, 0]]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(8, 40))
def test_packed_and_padded_hold_the_same_sequences(seed: int, n: int, pack_length: int) -> None:
    pairs = make_pairs(seed, n)
    padded = PairCollator(PAD, 3)(pairs)
    packed = PairCollator(PAD, 3, packed=True, pack_length=pack_length)(pairs)
    assert packed.packed and packed.num_sequences == padded.num_sequences == 2 * n
    assert per_sequence(packed) == per_sequence(padded)
    expected = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    for (ids, segments, positions), sequence in zip(per_sequence(packed), expected, strict=True):
        assert ids == sequence.input_ids.tolist() and segments == sequence.segment_ids.tolist()
        assert positions == list(range(len(sequence)))
    # Rows: real tokens first, then only padding (sequence -1, segment -1, attention 0); no row over the limit
    # unless it holds one oversize sequence.
    for r in range(packed.input_ids.shape[0]):
        real = packed.attention_mask[r].bool()
        count = int(real.sum())
        assert real[:count].all() and not real[count:].any()
        assert (packed.sequence_ids[r, count:] == -1).all() and (packed.segment_ids[r, count:] == -1).all()
        assert (packed.input_ids[r, count:] == PAD).all()
        if count > pack_length:
            assert len(set(packed.sequence_ids[r, :count].tolist())) == 1
    # Every sequence starts with an unscored token at position 0.
    starts = packed.position_ids == 0
    assert (packed.segment_ids[starts & packed.attention_mask.bool()] == -1).all()
    assert packed.input_ids.shape[0] <= padded.input_ids.shape[0]


def test_unpair_and_kl_sequences() -> None:
    pairs = make_pairs(1, 2)
    examples = unpair(pairs)
    assert [(e.example_id, e.desirable) for e in examples] == [(200, True), (201, False), (202, True), (203, False)]
    order = [2, 0, 3]  # a shuffled batch, not aligned with pairs
    batch = UnpairedCollator(PAD, 3)([examples[i] for i in order])
    assert batch.num_sequences == 6 and batch.num_kl_sequences == 3
    assert batch.desirable is not None and batch.desirable.tolist() == [True, True, False]
    assert batch.example_ids.tolist() == [202, 200, 203]
    seqs = per_sequence(batch)
    for i in range(3):
        own, nxt = examples[order[i]].sequence, examples[order[(i + 1) % 3]].sequence
        ids, segments, _ = seqs[3 + i]
        p = own.prompt_length
        assert ids == own.input_ids[:p].tolist() + nxt.input_ids[nxt.prompt_length :].tolist()
        assert segments == [-1] * p + nxt.segment_ids[nxt.prompt_length :].tolist()
    packed = UnpairedCollator(PAD, 3, packed=True, pack_length=16)([examples[i] for i in order])
    assert per_sequence(packed) == seqs and packed.num_kl_sequences == 3


def test_kl_sequence_of_itself_is_itself() -> None:
    (pair,) = make_pairs(3, 1)
    same = kl_sequence(pair.chosen, pair.chosen)
    assert same.input_ids.tolist() == pair.chosen.input_ids.tolist() and same.prompt_length == pair.chosen.prompt_length


def test_collate_rejects_empty_batches() -> None:
    with pytest.raises(ValueError, match="empty"):
        PairCollator(PAD, 3)([])


# ---------------------------------------------------------------- sampler


def _batches(sampler: DistributedLengthGroupedSampler) -> list[list[int]]:
    return [list(b) for b in training_batch_sampler(sampler)]


def test_length_grouped_sampler_is_a_seeded_permutation_with_grouped_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 1000, 203).tolist()
    sampler = DistributedLengthGroupedSampler(lengths, batch_size=8, group_factor=5, seed=1)
    batches = _batches(sampler)
    assert len(batches) == sampler.num_batches == 26 and len(sampler) == 203
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert [len(b) for b in batches[:-1]] == [8] * 25 and len(batches[-1]) == 3  # only the last one is short
    assert batches == _batches(DistributedLengthGroupedSampler(lengths, 8, seed=1, group_factor=5))
    assert _batches(sampler) == batches  # the epoch is the caller's (Lightning sets it): a second pass repeats it
    sampler.set_epoch(1)
    second_epoch = _batches(sampler)
    assert second_epoch != batches and sorted(i for b in second_epoch for i in b) == list(range(203))

    # Grouping: padding waste (sum over batches of max*size - sum) is far below that of random batches.
    def waste(bs: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    plain = _batches(DistributedLengthGroupedSampler(lengths, 8, seed=1, group_by_length=False))
    assert sorted(i for b in plain for i in b) == list(range(203))
    assert waste(batches) < 0.5 * waste(plain)
    dropped = DistributedLengthGroupedSampler(lengths, 8, seed=1, group_factor=5, drop_last=True)
    assert len(_batches(dropped)) == 25 and all(len(b) == 8 for b in _batches(dropped))


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_split_the_global_batches_of_one_process_with_the_same_global_batch(world: int) -> None:
    """What makes DDP over W ranks with batch b train like one process with batch W*b: same global batches."""
    rng = np.random.default_rng(world)
    lengths = rng.integers(10, 500, 101).tolist()
    b = 4
    single = DistributedLengthGroupedSampler(lengths, b * world, seed=3, group_factor=3)
    ranks = [DistributedLengthGroupedSampler(lengths, b, world, r, seed=3, group_factor=3) for r in range(world)]
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for sampler in ranks:
            sampler.set_epoch(epoch)
        per_rank = [_batches(s) for s in ranks]
        assert len({len(batches) for batches in per_rank}) == 1  # every rank runs the same number of steps
        assert len({len(batch) for batches in per_rank for batch in batches[:-1]}) == 1
        for step, global_batch in enumerate(_batches(single)):
            shards = [set(batches[step]) for batches in per_rank] if step < len(per_rank[0]) else []
            union = set().union(*shards) if shards else set()
            assert all(len(shard) == len(shards[0]) for shard in shards)  # equal chunks: DDP's mean is the mean
            assert union <= set(global_batch) and len(global_batch) - len(union) < world
            assert not any(shards[i] & shards[j] for i in range(world) for j in range(i + 1, world))


def test_sampler_resumes_mid_epoch_and_rolls_over_a_finished_epoch() -> None:
    lengths = list(range(10, 60))
    full = DistributedLengthGroupedSampler(lengths, 4, seed=0)
    epoch0 = _batches(full)
    resumed = DistributedLengthGroupedSampler(lengths, 4, seed=0)
    resumed.start_at(0, 5)
    assert _batches(resumed) == epoch0[5:]
    assert _batches(resumed) == epoch0  # the skip applies to one pass only
    resumed.start_at(0, len(epoch0))  # the checkpoint was taken after the epoch's last batch
    full.set_epoch(1)
    assert resumed.epoch == 1 and _batches(resumed) == _batches(full)
    resumed.start_at(1, 2)
    resumed.set_epoch(1)  # Lightning sets the same epoch again: the position stands
    assert _batches(resumed) == _batches(full)[2:]
    resumed.start_at(1, 2)
    resumed.set_epoch(2)  # another epoch: the position is dropped
    full.set_epoch(2)
    assert _batches(resumed) == _batches(full)


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        DistributedLengthGroupedSampler([1, 2], 0)
    with pytest.raises(ValueError, match="rank 2"):
        DistributedLengthGroupedSampler([1, 2], 1, num_replicas=2, rank=2)


def test_batches_are_tensors_of_the_contract_dtypes() -> None:
    batch = PairCollator(PAD, 3, packed=True, pack_length=16)(make_pairs(5, 3))
    for name in ("input_ids", "attention_mask", "position_ids", "segment_ids", "sequence_ids", "example_ids"):
        assert getattr(batch, name).dtype == torch.long
