"""One pass from raw rows to tokenized train/validation sets: segment, split, tokenize, cache."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hipo.data.cache import data_cache_root, fingerprint, load_prepared, save_prepared, tokenizer_fingerprint
from hipo.data.data_stats import DataStats
from hipo.data.segmented import SegmentedPair
from hipo.data.segmenters.base import Segmenter, segment_rows
from hipo.data.sources.base import RowSource
from hipo.data.tokenize import PreferenceTokenizer, TokenizedPair
from hipo.errors import UserError

log = logging.getLogger(__name__)
PREPARE_VERSION = 1


@dataclass
class PreparedData:
    """Tokenized train and validation pairs, the validation pairs' text, counts, and where they came from.

    Attributes:
        train: tokenized training pairs (``example_id`` = index).
        val: tokenized validation pairs (``example_id`` = index).
        val_pairs: ``val[i]`` as text (a :class:`SegmentedPair`), for evaluation and inspection.
        stats: what was read, kept, skipped, truncated.
        fingerprint: the cache key.
        from_cache: whether this was read from the cache.
    """

    train: list[TokenizedPair]
    val: list[TokenizedPair]
    val_pairs: list[SegmentedPair]
    stats: DataStats
    fingerprint: str
    from_cache: bool = False


def split_by_prompt(
    pairs: list[SegmentedPair], val_fraction: float, seed: int
) -> tuple[list[SegmentedPair], list[SegmentedPair]]:
    """(train, validation) by a seeded hash of the prompt: all pairs of one prompt land on the same side."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train: list[SegmentedPair] = []
    val: list[SegmentedPair] = []
    for pair in pairs:
        digest = hashlib.sha256(f"{seed}\x00{pair.prompt}".encode()).digest()
        (val if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else train).append(pair)
    return train, val


def _cache_description(
    source: RowSource,
    segmenter: Segmenter,
    tokenizer: PreferenceTokenizer,
    val_source: RowSource | None,
    val_fraction: float,
    max_val_pairs: int | None,
    seed: int,
    responses_only: bool,
) -> dict[str, Any]:
    """What the prepared data depends on (its fingerprint is the cache key; saved with the cache entry)."""
    return {
        "responses_only": responses_only,
        "prepare_version": PREPARE_VERSION,
        "source": source.fingerprint(),
        "val_source": val_source.fingerprint() if val_source is not None else None,
        "segmenter": segmenter.config(),
        "tokenizer": tokenizer_fingerprint(tokenizer.tokenizer),
        "tokenization": tokenizer.config(),
        "val_fraction": val_fraction if val_source is None else None,
        "max_val_pairs": max_val_pairs,
        "seed": seed,
    }


def _segment_and_split(
    source: RowSource,
    segmenter: Segmenter,
    stats: DataStats,
    val_source: RowSource | None,
    val_fraction: float,
    max_val_pairs: int | None,
    seed: int,
    responses_only: bool,
) -> tuple[list[SegmentedPair], list[SegmentedPair], bool]:
    """(train pairs, validation pairs, whether ``segmenter.prepare`` finished every row) as text; counts in ``stats``.

    Every row (training and validation) goes to ``segmenter.prepare`` first, then each set is segmented; without
    ``val_source`` the validation pairs are a ``val_fraction`` split by prompt, cut to ``max_val_pairs``.
    """
    rows = list(source.rows())
    val_rows = list(val_source.rows()) if val_source is not None else []
    final = segmenter.prepare(rows + val_rows)
    pairs = list(segment_rows(rows, segmenter, stats, responses_only))
    if val_source is not None:
        train_text, val_text = pairs, list(segment_rows(val_rows, segmenter, stats, responses_only))
    else:
        train_text, val_text = split_by_prompt(pairs, val_fraction, seed)
    if max_val_pairs is not None:
        val_text = val_text[:max_val_pairs]
    return train_text, val_text, final


def prepare_data(
    source: RowSource,
    segmenter: Segmenter,
    tokenizer: PreferenceTokenizer,
    val_source: RowSource | None = None,
    val_fraction: float = 0.1,
    max_val_pairs: int | None = None,
    seed: int = 0,
    use_cache: bool = True,
    cache_root: Path | None = None,
    responses_only: bool = False,
) -> PreparedData:
    """Segments and tokenizes ``source`` (and ``val_source``, else a ``val_fraction`` split by prompt), cached.

    All rows are first handed to ``segmenter.prepare`` (the ``llm`` segmenter decomposes every response there,
    concurrently); the result is cached under a key of the source, segmenter, tokenizer and options, unless
    ``prepare`` reports a failure that a rerun may not meet. ``responses_only``: the chosen responses alone (SFT).

    Raises:
        DataError: malformed rows, missing fields, or (``on_failure=error``) segmentation failures, all naming
            the file, line and field; raised before anything is written to the cache.
    """
    description = _cache_description(
        source, segmenter, tokenizer, val_source, val_fraction, max_val_pairs, seed, responses_only
    )
    key = fingerprint(description)
    path = (cache_root if cache_root is not None else data_cache_root()) / f"{key}.npz"
    if use_cache and path.exists():
        train, val, val_pairs, stats = load_prepared(path)
        log.info("prepared data read from the cache %s", path)
        return PreparedData(train, val, val_pairs, stats, key, from_cache=True)

    stats = DataStats()
    train_text, val_text, final = _segment_and_split(
        source, segmenter, stats, val_source, val_fraction, max_val_pairs, seed, responses_only
    )
    train, _ = tokenizer.tokenize_and_filter(train_text, stats)
    val, kept = tokenizer.tokenize_and_filter(val_text, stats)
    val_pairs = [val_text[i] for i in kept]
    stats.train_pairs, stats.val_pairs = len(train), len(val)
    stats.pairs_kept = len(train) + len(val)
    if not train:
        raise UserError(
            f"{source.name}: no training pairs left after preparation ({stats.as_dict()})",
            hint="the skipped counts say why: segmentation failures (segmenter.on_failure), empty responses, or "
            "pairs longer than data.max_length under data.truncation=drop_pair",
        )
    if use_cache and final:
        save_prepared(path, train, val, val_pairs, stats, description)
        log.info("prepared data written to the cache %s", path)
    elif use_cache:
        log.warning(
            "prepared data NOT cached: some segmentation requests failed (network or server); run again to retry "
            "them (finished replies are cached and not requested again)"
        )
    return PreparedData(train, val, val_pairs, stats, key, from_cache=False)
