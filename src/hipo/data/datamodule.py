"""The LightningDataModule: prepares (segments, tokenizes, caches) once in ``setup`` and serves TokenBatches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from hipo.data.batch import TokenBatch
from hipo.data.collate import (
    PairCollator,
    ResponseCollator,
    TokenizedExample,
    UnpairedCollator,
    chosen_responses,
    unpair,
)
from hipo.data.data_stats import DataStats
from hipo.data.prepare import PreparedData, prepare_data
from hipo.data.samplers import DistributedLengthGroupedSampler, training_batch_sampler
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedPair
from hipo.data.segmenters.base import Segmenter
from hipo.data.sources.base import RowSource
from hipo.data.tokenize import PreferenceTokenizer, TokenizedPair

log = logging.getLogger(__name__)


class ListDataset(Dataset):
    """A map-style dataset over an in-memory list (tokenized pairs or unpaired examples)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


class PreferenceDataModule(L.LightningDataModule):
    """Segmented preference data as :class:`TokenBatch` es (paired for DPO/HiPO, unpaired for KTO, the chosen
    responses alone for SFT).

    Args:
        source: training rows (and validation rows unless ``val_source`` is given).
        segmenter: rows -> SegmentedPairs (with its failure policy).
        tokenizer: a fast tokenizer with a chat template, or a model name / folder / hub id whose tokenizer
            :func:`hipo.models.loading.load_tokenizer` loads.
        segments: ordered segment names.
        max_length: tokens per sequence; ``truncation`` / ``truncate_from`` say how longer ones are handled.
        truncation: ``drop_pair`` | ``truncate_segment``.
        truncate_from: segment shortened under ``truncate_segment``.
        batch_size: training pairs (paired) or examples (unpaired) per batch.
        eval_batch_size: the same for validation.
        packed: padding-free batches (``pack_length`` tokens per row).
        pack_length: tokens per packed row.
        paired: False gives the unpaired (KTO) view with KL sequences.
        responses_only: serve the chosen responses alone, in training and validation (SFT); rows need no rejected
            response and may hold a ``completion`` instead of ``chosen`` (see ``segment_rows``).
        val_fraction: validation share (by prompt hash) when there is no ``val_source``.
        val_source: explicit validation rows.
        max_val_pairs: cap on validation pairs.
        seed: split, shuffling and sampling seed.
        num_workers: DataLoader workers.
        system_prompt: system message for the chat template.
        end_of_turn: text after the response (None: derived from the template).
        length_grouped: group padded training batches by length.
        use_cache: read/write the prepared-data cache.
        cache_root: cache folder (default ``cache_dir()/data``).
    """

    def __init__(
        self,
        source: RowSource,
        segmenter: Segmenter,
        tokenizer: Any,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        max_length: int | None = 512,
        truncation: str = "truncate_segment",
        truncate_from: str = "Mt",
        batch_size: int = 4,
        eval_batch_size: int = 8,
        packed: bool = False,
        pack_length: int = 2048,
        paired: bool = True,
        responses_only: bool = False,
        val_fraction: float = 0.1,
        val_source: RowSource | None = None,
        max_val_pairs: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        system_prompt: str | None = None,
        end_of_turn: str | None = None,
        length_grouped: bool = True,
        use_cache: bool = True,
        cache_root: str | Path | None = None,
    ) -> None:
        super().__init__()
        if tuple(segments) != segmenter.segments:
            raise ValueError(f"segments {list(segments)} differ from the segmenter's {list(segmenter.segments)}")
        self.source, self.val_source, self.segmenter = source, val_source, segmenter
        if isinstance(tokenizer, (str, Path)):
            from hipo.models.loading import load_tokenizer

            tokenizer = load_tokenizer(str(tokenizer))
        self.tokenizer = tokenizer
        self.preference_tokenizer = PreferenceTokenizer(
            self.tokenizer, segments, max_length, truncation, truncate_from, system_prompt, end_of_turn
        )
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its EOS token)")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        if responses_only and paired:
            raise ValueError("responses_only serves single responses: pass paired=False with it")
        self.packed, self.pack_length, self.paired = packed, pack_length, paired
        self.responses_only = responses_only
        self.val_fraction, self.max_val_pairs, self.seed = val_fraction, max_val_pairs, seed
        self.num_workers, self.length_grouped, self.use_cache = num_workers, length_grouped, use_cache
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.prepared: PreparedData | None = None
        self._resume_position: tuple[int, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Prepares the data once (from the cache when possible); bad input raises here, before training."""
        if self.prepared is not None:
            return
        self.prepared = prepare_data(
            self.source,
            self.segmenter,
            self.preference_tokenizer,
            self.val_source,
            self.val_fraction,
            self.max_val_pairs,
            self.seed,
            self.use_cache,
            self.cache_root,
            responses_only=self.responses_only,
        )
        log.info("data prepared (%s): %s", "cached" if self.prepared.from_cache else "fresh", self.stats.as_dict())

    def _require(self) -> PreparedData:
        if self.prepared is None:
            raise RuntimeError("call setup() before using the data module")
        return self.prepared

    @property
    def stats(self) -> DataStats:
        """Counts of rows read, pairs kept, skipped by reason, truncated and dropped."""
        return self._require().stats

    @property
    def val_pairs(self) -> list[SegmentedPair]:
        """The validation pairs as text (same order as the validation dataset)."""
        return self._require().val_pairs

    @property
    def train_pairs(self) -> list[TokenizedPair]:
        return self._require().train

    def _collator(self, validation: bool = False) -> PairCollator:
        """Training: pairs, unpaired examples with KL rows, or responses; validation: pairs (or responses)."""
        pad_id = int(self.tokenizer.pad_token_id)
        kind: type[PairCollator] = PairCollator
        if self.responses_only:
            kind = ResponseCollator
        elif not self.paired and not validation:
            kind = UnpairedCollator
        return kind(pad_id, self.preference_tokenizer.num_segments, self.packed, self.pack_length)

    def _items(self, pairs: list[TokenizedPair]) -> list[TokenizedPair] | list[TokenizedExample]:
        if self.responses_only:
            return chosen_responses(pairs)
        return pairs if self.paired else unpair(pairs)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next training dataloader starts epoch ``epoch`` at its batch ``batches_done`` (exact resume)."""
        self._resume_position = (epoch, batches_done)

    def _replicas(self) -> tuple[int, int]:
        """(number of data-parallel ranks, this rank) of the Trainer driving this module, (1, 0) without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_sampler(self) -> DistributedLengthGroupedSampler:
        """This rank's training order (length-grouped in padded mode), positioned at the resume point if any."""
        items = self._items(self._require().train)
        lengths = [max(map(len, p.paired_sides())) if isinstance(p, TokenizedPair) else len(p.sequence) for p in items]
        replicas, rank = self._replicas()
        sampler = DistributedLengthGroupedSampler(
            lengths,
            self.batch_size,
            num_replicas=replicas,
            rank=rank,
            seed=self.seed,
            group_by_length=self.length_grouped and not self.packed,
        )
        if self._resume_position is not None:
            sampler.start_at(*self._resume_position)
            self._resume_position = None
        return sampler

    def train_dataloader(self) -> DataLoader[TokenBatch]:
        """Training batches of this rank (the Trainer must not replace the sampler: ``use_distributed_sampler=False``).

        The loader has its own generator, so creating an iterator draws nothing from the global torch RNG (a resumed
        run would otherwise see a different dropout stream than an uninterrupted one).
        """
        return DataLoader(
            ListDataset(self._items(self._require().train)),
            batch_sampler=training_batch_sampler(self.train_sampler()),
            collate_fn=self._collator(),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader[TokenBatch]:
        """Held-out pairs, always paired (even for KTO): preference accuracy compares chosen with rejected; the
        chosen responses alone under ``responses_only``.

        With several ranks each scores every W-th pair; shards are padded to equal length with copies whose
        ``example_id`` is -1, which the held-out metrics ignore, so every pair counts exactly once and every rank
        runs the same number of batches (sharded models need all ranks in every forward).
        """
        pairs = self._require().val
        replicas, rank = self._replicas()
        if replicas > 1:
            pairs = shard_with_padding(pairs, replicas, rank)
        return DataLoader(
            ListDataset(chosen_responses(pairs) if self.responses_only else pairs),
            self.eval_batch_size,
            shuffle=False,
            collate_fn=self._collator(validation=True),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )


def shard_with_padding(pairs: Sequence[TokenizedPair], replicas: int, rank: int) -> list[TokenizedPair]:
    """Pairs ``rank, rank + W, ...`` padded to ``ceil(n / W)`` with ``example_id = -1`` copies (ignored by metrics)."""
    shard = list(pairs[rank::replicas])
    size = -(-len(pairs) // replicas)
    filler = pairs[0] if pairs else None
    while len(shard) < size and filler is not None:
        shard.append(replace(filler, example_id=-1))
    return shard
