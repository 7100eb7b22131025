"""`hipo segment`: shows how the first N rows of a dataset are segmented, for a person to check the segmenter."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig

from hipo.app.builders import build_segmenter, instantiate_component
from hipo.data.data_stats import DataStats
from hipo.data.describe import describe_segmentation
from hipo.data.row_errors import RowLocation
from hipo.data.segmented import SegmentedPair
from hipo.data.segmenters.base import Segmenter, segment_rows


def segment(cfg: DictConfig) -> dict[str, Any]:
    """Segments ``cfg.num_examples`` pairs of ``cfg.data`` with ``cfg.segmenter`` and prints them with token counts.

    Rows are read lazily: only as many as needed to show ``num_examples`` pairs (skipped rows are counted), and
    each batch of rows is handed to ``segmenter.prepare`` first (the ``llm`` segmenter decomposes it concurrently).

    Returns:
        ``{"shown": n, "stats": DataStats dict}``.
    """
    from hipo.models.loading import load_tokenizer

    source = instantiate_component(cfg.data.source)
    segmenter = build_segmenter(cfg.segmenter)
    stats = DataStats()
    pairs = first_pairs(source.rows(), segmenter, stats, int(cfg.num_examples))
    tokenizer = load_tokenizer(cfg.model.name_or_path, revision=cfg.model.revision)
    print(describe_segmentation(pairs, n=len(pairs), tokenizer=tokenizer))
    counts = stats.as_dict()
    print(f"\nrows read: {counts['rows_read']}, shown: {len(pairs)}, " + _skips(counts))
    return {"shown": len(pairs), "stats": counts}


def first_pairs(
    rows: Iterable[tuple[RowLocation, Mapping[str, Any]]], segmenter: Segmenter, stats: DataStats, count: int
) -> list[SegmentedPair]:
    """The first ``count`` segmented pairs of ``rows``: batches of the rows still needed, each prepared at once."""
    rows = iter(rows)
    pairs: list[SegmentedPair] = []
    while len(pairs) < count:
        batch = list(itertools.islice(rows, count - len(pairs)))
        if not batch:
            break
        segmenter.prepare(batch)
        pairs.extend(segment_rows(batch, segmenter, stats))
    return pairs


def _skips(counts: dict[str, Any]) -> str:
    interesting = {k: v for k, v in counts.items() if k not in ("rows_read", "pairs_kept") and v}
    return ", ".join(f"{k}: {v}" for k, v in interesting.items()) or "no rows skipped or fallen back"
