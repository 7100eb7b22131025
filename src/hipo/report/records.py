"""Per-problem records of a run, by metric: what the report's tests compare problem by problem."""

from __future__ import annotations

import functools

from hipo.report.collect import load_held_out_pairs, load_samples, pair_accuracy
from hipo.report.tables import MetricSpec


class RunRecords:
    """``(run_id, spec) -> {problem: value}``: a run's per-problem records of one metric, read once per run.

    Benchmark accuracy: per-problem correctness (``eval/<bench>/samples.json``). Held-out accuracy or margin of a
    term: each pair's margin, or the accuracy it implies (``held_out/pairs.csv``).
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._pairs = functools.lru_cache(maxsize=None)(functools.partial(load_held_out_pairs, tracking_uri))

    def __call__(self, run_id: str, spec: MetricSpec) -> dict[str, float] | None:
        if spec.kind == "benchmark" and spec.benchmark is not None:
            return load_samples(self.tracking_uri, run_id, spec.benchmark)
        if spec.kind != "held_out" or spec.term is None:
            return None
        pairs = self._pairs(run_id)
        if pairs is None or spec.term not in pairs:
            return None
        margins = pairs[spec.term]
        if spec.statistic == "margin":
            return dict(margins)
        return {pair: pair_accuracy(margin) for pair, margin in margins.items()}
