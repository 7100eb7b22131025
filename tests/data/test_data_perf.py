"""Performance of data preparation: segmenting + tokenizing Math-Stack-Exchange-like pairs.

The target (20k pairs in at most 30 s on 2 cores) was set on a machine where that was 16.8 s. Machines differ: on
2026-12-01 a bare batch tokenization of the same text alone took 42 s on this project's 2-core machine. So the test
measures both side by side on 10k pairs: the preparation must cost at most 1.5x the bare tokenization (seen: 1.06x),
and the absolute target (15 s for 10k) is asserted where the machine is fast enough to meet it at all, i.e. where the
bare tokenization alone takes less than 2/3 of it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.data_perf_prepare import time_bare_tokenization, time_prepare

PAIRS = 10_000
TARGET_S = 15.0  # 30 s for 20k pairs


@pytest.mark.slow
def test_data_preparation_costs_little_more_than_tokenizing(smollm2_tokenizer: Any) -> None:
    seconds, tokens = time_prepare(smollm2_tokenizer, PAIRS)
    bare = time_bare_tokenization(smollm2_tokenizer, PAIRS)
    # ~1230 tokens per pair: prompt ~170 (incl. chat template) and responses ~450 each, twice.
    assert PAIRS * 1000 < tokens < PAIRS * 1500
    assert seconds < 1.5 * bare, f"preparation {seconds:.1f} s vs bare tokenization {bare:.1f} s"
    if bare < TARGET_S * 2 / 3:
        assert seconds < TARGET_S, f"{seconds:.1f} s for {PAIRS} pairs (bare tokenization {bare:.1f} s)"
