"""Synthetic preference batches: random tokens with lengths from a mix and 3 segments of random proportions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hipo.data.batch import TokenBatch
from hipo.data.collate import PairCollator, UnpairedCollator, unpair
from hipo.data.tokenize import TokenizedPair, TokenizedSequence
from hipo.perf.config import MixConfig

FIRST_ID = 3  # ids 0..2 are SmolLM2's special tokens; random tokens avoid them


def sample_lengths(mix: MixConfig, count: int, rng: np.random.Generator, prompt: bool) -> np.ndarray:
    """[count] lengths (tokens) of prompts or responses under ``mix``."""
    median = mix.prompt_length if prompt else mix.response_length
    if mix.kind == "fixed":
        return np.full(count, median, dtype=np.int64)
    if mix.kind != "lognormal":
        raise ValueError(f"perf.mix.kind must be fixed or lognormal, got {mix.kind!r}")
    low, high = (mix.prompt_min, mix.prompt_max) if prompt else (mix.response_min, mix.response_max)
    values = np.rint(median * np.exp(mix.sigma * rng.standard_normal(count)))
    return np.clip(values, low, high).astype(np.int64)


def synthetic_sequence(
    prompt: np.ndarray, response_length: int, num_segments: int, vocab_size: int, rng: np.random.Generator
) -> TokenizedSequence:
    """``prompt`` then ``response_length`` random tokens: S segments of Dirichlet(1) proportions (each >= 1 token
    when the response allows), then one end token labelled S."""
    body = max(response_length - 1, 0)
    sizes = np.zeros(num_segments, dtype=np.int64)
    if body >= num_segments:
        sizes = 1 + rng.multinomial(body - num_segments, rng.dirichlet(np.ones(num_segments)))
    else:
        sizes[:body] = 1
    segments = np.concatenate([np.full(n, k, dtype=np.int8) for k, n in enumerate(sizes)] + [np.array([num_segments])])
    response = rng.integers(FIRST_ID, vocab_size, size=len(segments))
    ids = np.concatenate([prompt, response]).astype(np.int32)
    segment_ids = np.concatenate([np.full(len(prompt), -1, dtype=np.int8), segments.astype(np.int8)])
    return TokenizedSequence(ids, segment_ids, len(prompt))


def synthetic_pairs(
    mix: MixConfig, count: int, num_segments: int, vocab_size: int, seed: int = 0
) -> list[TokenizedPair]:
    """``count`` pairs; chosen and rejected share the prompt and draw their response lengths independently."""
    rng = np.random.default_rng(seed)
    prompts = sample_lengths(mix, count, rng, prompt=True)
    chosen = sample_lengths(mix, count, rng, prompt=False)
    rejected = sample_lengths(mix, count, rng, prompt=False)
    pairs = []
    for i in range(count):
        prompt = rng.integers(FIRST_ID, vocab_size, size=int(prompts[i]))
        good = synthetic_sequence(prompt, int(chosen[i]), num_segments, vocab_size, rng)
        bad = synthetic_sequence(prompt, int(rejected[i]), num_segments, vocab_size, rng)
        pairs.append(TokenizedPair(good, bad, i))
    return pairs


def batch_collator(
    num_segments: int, paired: bool, packed: bool, pack_length: int, pad_id: int = 2
) -> Callable[[list[TokenizedPair]], TokenBatch]:
    """``pairs -> TokenBatch`` by the data layer's collators.

    Paired: 2B sequences (chosen, rejected). Unpaired (KTO): the same 2B sequences as examples plus 2B KL sequences.
    """
    if paired:
        return PairCollator(pad_id, num_segments, packed, pack_length)
    collate = UnpairedCollator(pad_id, num_segments, packed, pack_length)
    return lambda pairs: collate(unpair(pairs))


def batch_groups(count: int, pairs_per_step: int) -> list[list[int]]:
    """The pair indices of each batch: consecutive groups of ``pairs_per_step`` (a short remainder is dropped)."""
    starts = range(0, count - pairs_per_step + 1, pairs_per_step)
    return [list(range(start, start + pairs_per_step)) for start in starts]


def synthetic_batches(
    pairs: list[TokenizedPair],
    pairs_per_step: int,
    num_segments: int,
    paired: bool,
    packed: bool,
    pack_length: int,
    pad_id: int = 2,
) -> list[TokenBatch]:
    """The batches of :func:`batch_groups`, collated by :func:`batch_collator`."""
    collate = batch_collator(num_segments, paired, packed, pack_length, pad_id)
    return [collate([pairs[i] for i in group]) for group in batch_groups(len(pairs), pairs_per_step)]


def useful_tokens(batch: TokenBatch) -> int:
    """Scored response tokens of the batch's examples (KTO's KL sequences are overhead, not counted)."""
    examples = batch.num_sequences - batch.num_kl_sequences
    return int(((batch.segment_ids >= 0) & (batch.sequence_ids < examples)).sum())
