"""A seeded, length-grouped batch sampler for padded batches (less padding, still shuffled)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths, in a shuffled order.

    Each epoch: shuffle all indices (seed + epoch), cut them into mega-batches of ``batch_size * group_factor``,
    sort each mega-batch by length (longest first) and cut it into batches, then shuffle the batches. The result
    is a permutation of the dataset (every index exactly once per epoch) whose batches hold similar lengths.

    The epoch advances by itself after each full pass (Lightning calls ``set_epoch`` only on a batch sampler's
    inner ``sampler``, which this class does not have); :meth:`set_epoch` sets it explicitly. With
    ``num_replicas > 1`` each rank takes every ``num_replicas``-th batch (all ranks the same number of batches);
    under Lightning DDP pass ``use_distributed_sampler=False`` to the Trainer so it does not try to wrap it.

    Args:
        lengths: per item, its length (e.g. the longer of a pair's two sequences).
        batch_size: items per batch.
        group_factor: batches per mega-batch (1: no grouping beyond the batch).
        seed: base seed; :meth:`set_epoch` changes the order per epoch (Lightning calls it).
        drop_last: drop a final incomplete batch.
        num_replicas: number of data-parallel ranks.
        rank: this rank (0..num_replicas-1).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        group_factor: int = 50,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1 or group_factor < 1:
            raise ValueError("batch_size and group_factor must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.num_replicas, self.rank = num_replicas, rank
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.group_factor = group_factor
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        mega = self.batch_size * self.group_factor
        batches: list[list[int]] = []
        for start in range(0, len(order), mega):
            group = order[start : start + mega]
            group = group[np.argsort(-self.lengths[group], kind="stable")]
            batches.extend(group[i : i + self.batch_size].tolist() for i in range(0, len(group), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()  # mega-batches hold whole batches, so only the last one can be short
        shuffled = [batches[i] for i in rng.permutation(len(batches))]
        per_rank = len(shuffled) // self.num_replicas
        return shuffled[self.rank :: self.num_replicas][:per_rank] if self.num_replicas > 1 else shuffled

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        total = full if self.drop_last or rest == 0 else full + 1
        return total // self.num_replicas
