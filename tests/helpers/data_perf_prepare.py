"""Timing of segmenting + tokenizing Math-Stack-Exchange-like pairs (used by test_data_perf.py; runnable alone).

Prompts of ~150 tokens and responses of ~300-600 tokens, pre-decomposed (Rq_a … Ra_b) like the paper's data.
Run: ``python tests/helpers/data_perf_prepare.py 20000``.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from hipo.data.data_stats import DataStats
from hipo.data.row_errors import RowLocation
from hipo.data.segmenters import FieldsSegmenter, segment_rows
from hipo.data.tokenize import PreferenceTokenizer

_WORDS = (
    "let the function integral derivative prime number we show that if then since because matrix vector "
    "equation solution limit sequence converges bounded $x^2$ $\\frac{1}{n}$ $\\sum_{k=1}^n k$ therefore"
).split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[RowLocation, dict[str, Any]]]:
    """``n`` rows with ~150-token questions and ~300-600-token decomposed responses."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"question": _text(rng, 85)}
        for side in "ab":
            total = rng.randint(165, 330)  # words; about 1.8 tokens per word with these words
            row[f"Rq_{side}"] = _text(rng, total // 8)
            row[f"Mt_{side}"] = _text(rng, total * 3 // 4)
            row[f"Ra_{side}"] = _text(rng, total // 8)
        rows.append((RowLocation("perf", i + 1), row))
    return rows


def time_bare_tokenization(tokenizer: Any, n: int) -> float:
    """Seconds a bare batch tokenization (with offsets) of the same ``n`` pairs' text takes: the floor any data
    preparation pays on this machine, to measure side by side with :func:`time_prepare`."""
    texts = []
    for _, row in synthetic_rows(n):
        for side in "ab":
            texts.append(row["question"] + "\n\n" + "\n\n".join(row[f"{k}_{side}"] for k in ("Rq", "Mt", "Ra")))
    start = time.perf_counter()
    tokenizer(texts, return_offsets_mapping=True)
    return time.perf_counter() - start


def time_prepare(tokenizer: Any, n: int) -> tuple[float, int]:
    """Seconds to segment and tokenize ``n`` pairs, and the number of tokens produced."""
    rows = synthetic_rows(n)
    start = time.perf_counter()
    pairs = list(segment_rows(rows, FieldsSegmenter(), DataStats()))
    tokenized = PreferenceTokenizer(tokenizer, max_length=None).tokenize_pairs(pairs)
    seconds = time.perf_counter() - start
    return seconds, sum(len(p.chosen) + len(p.rejected) for p in tokenized)


if __name__ == "__main__":
    from transformers import AutoTokenizer

    from hipo.models.embedded import ensure_converted

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    seconds, tokens = time_prepare(AutoTokenizer.from_pretrained(ensure_converted()), count)
    print(f"{count} pairs, {tokens} tokens: {seconds:.1f} s ({tokens / seconds / 1e6:.2f} M tokens/s)")
