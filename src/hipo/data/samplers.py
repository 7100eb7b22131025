"""The training order: seeded, length-grouped, shared by any number of data-parallel ranks, resumable mid-epoch.

:class:`DistributedLengthGroupedSampler` yields the dataset indices of ONE rank for one epoch; wrapped in torch's
``BatchSampler(sampler, batch_size)`` its consecutive blocks of ``batch_size`` indices are that rank's batches.

Per epoch (a function of ``seed`` and ``epoch`` only):

1. shuffle all indices;
2. cut them into mega-batches of ``global_batch_size * group_factor`` and sort each by length, longest first
   (``group_by_length``; otherwise keep the shuffled order);
3. cut each mega-batch into global batches of ``global_batch_size = batch_size * num_replicas`` and shuffle the
   full global batches (a short final one, if any, stays last);
4. cut every global batch into ``num_replicas`` contiguous chunks of ``batch_size``: rank ``r`` takes chunk ``r``.

The global batches depend on the global batch size, not on how it is split: one process with batch size ``2b``
sees at every step exactly the union of what two processes with ``b`` see, which is why data-parallel training
over W ranks gives the same weights as one process with W times the batch (DDP averages the per-rank means of
equal-sized chunks). A short final global batch is trimmed to a multiple of ``num_replicas`` (at most
``num_replicas - 1`` items of the epoch are left out, only when ``num_replicas > 1``) so every rank gets an
equal chunk; ``drop_last`` drops it altogether.

The epoch is set by the caller (Lightning calls :meth:`set_epoch` through ``BatchSampler.sampler`` at the start of
every epoch); :meth:`start_at` makes the next pass of an epoch begin at a given batch, which is how a resumed run
continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import BatchSampler, Sampler


class DistributedLengthGroupedSampler(Sampler[int]):
    """One rank's indices for one epoch (see the module docstring for the order).

    Args:
        lengths: per item, its length (e.g. the longer of a pair's two sequences).
        batch_size: items per batch on each rank.
        num_replicas: number of data-parallel ranks.
        rank: this rank (0..num_replicas-1).
        seed: base seed of the order; the epoch is mixed in.
        group_by_length: sort mega-batches by length (less padding); False gives a plain shuffle.
        group_factor: global batches per mega-batch.
        drop_last: drop a final global batch that is shorter than ``batch_size * num_replicas``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        group_by_length: bool = True,
        group_factor: int = 50,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1 or group_factor < 1:
            raise ValueError("batch_size and group_factor must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.seed, self.group_by_length, self.group_factor, self.drop_last = (
            seed,
            group_by_length,
            group_factor,
            drop_last,
        )
        self.epoch = 0
        self._start_batch = 0  # batches of `self.epoch` already consumed (resume), applied to the next pass only

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch of the next pass; a different epoch than the resume position clears it."""
        if epoch != self.epoch:
            self._start_batch = 0
        self.epoch = epoch

    def start_at(self, epoch: int, batches_done: int) -> None:
        """The next pass is epoch ``epoch`` from its batch ``batches_done``; a finished epoch means the next one."""
        if batches_done < 0:
            raise ValueError(f"batches_done must be >= 0, got {batches_done}")
        if batches_done >= self.num_batches:
            epoch, batches_done = epoch + 1, 0
        self.epoch, self._start_batch = epoch, batches_done

    @property
    def num_batches(self) -> int:
        """Batches of this rank per epoch."""
        return -(-len(self) // self.batch_size)

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches (index arrays), before they are split over ranks."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        size = self.global_batch_size
        batches: list[np.ndarray] = []
        for start in range(0, len(order), size * self.group_factor):
            group = order[start : start + size * self.group_factor]
            if self.group_by_length:
                group = group[np.argsort(-self.lengths[group], kind="stable")]
            batches.extend(group[i : i + size] for i in range(0, len(group), size))
        short = batches.pop() if batches and len(batches[-1]) < size else None
        batches = [batches[i] for i in rng.permutation(len(batches))]
        if short is not None and not self.drop_last:
            trimmed = short[: len(short) - len(short) % self.num_replicas]
            if len(trimmed):
                batches.append(trimmed)
        return batches

    def rank_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: chunk ``rank`` of every global batch."""
        out = []
        for batch in self.global_batches(epoch):
            chunk = len(batch) // self.num_replicas
            out.append(batch[self.rank * chunk : (self.rank + 1) * chunk].tolist())
        return out

    def __iter__(self) -> Iterator[int]:
        batches = self.rank_batches(self.epoch)[self._start_batch :]
        self._start_batch = 0
        return iter([index for batch in batches for index in batch])

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.global_batch_size)
        last = 0 if self.drop_last else rest // self.num_replicas
        return full * self.batch_size + last


def training_batch_sampler(sampler: DistributedLengthGroupedSampler) -> BatchSampler:
    """``BatchSampler`` over ``sampler``: its blocks of ``sampler.batch_size`` are the rank's batches.

    Only a rank's last batch of an epoch can be short, so the blocks line up with :meth:`rank_batches`.
    """
    return BatchSampler(sampler, sampler.batch_size, drop_last=False)
