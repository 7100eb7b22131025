"""Metric selection, derived judge means and cell formatting of the report tables."""

from __future__ import annotations

import math

from hipo.report.collect import RunRecord, benchmarks_of
from hipo.report.stats import SeedStats
from hipo.report.tables import add_judge_means, fmt_p, fmt_stats, held_out_segments, select_metrics


def _run(metrics: dict[str, float]) -> RunRecord:
    return RunRecord("r", "r", "FINISHED", "hipo", "0", dict(metrics), {})


def test_judge_mean_excludes_verbosity_and_handles_slashed_benchmark_names() -> None:
    """openai/gsm8k: (4 + 6) / 2 = 5 (verbosity 99 left out); math500: 9."""
    run = _run(
        {
            "eval/openai/gsm8k/accuracy": 0.5,
            "eval/openai/gsm8k/judge/logical_flow": 4.0,
            "eval/openai/gsm8k/judge/consistency": 6.0,
            "eval/openai/gsm8k/judge/verbosity": 99.0,
            "eval/math500/accuracy": 0.25,
            "eval/math500/judge/consistency": 9.0,
        }
    )
    add_judge_means([run])
    assert run.metrics["eval/openai/gsm8k/judge_mean"] == 5.0 and run.metrics["eval/math500/judge_mean"] == 9.0
    assert benchmarks_of([run]) == ["math500", "openai/gsm8k"]


def test_select_metrics_order_and_kinds() -> None:
    run = _run(
        {
            "eval/b/accuracy": 0.1,
            "eval/a/accuracy": 0.2,
            "eval/a/judge/x": 1.0,
            "val/rewards/accuracy/whole": 0.6,
            "val/rewards/accuracy/Ra": 0.6,
            "val/rewards/accuracy/Rq": 0.6,
            "train/loss": 0.3,
        }
    )
    add_judge_means([run])
    keys = [(s.kind, s.key) for s in select_metrics([run])]
    assert keys == [
        ("benchmark", "eval/a/accuracy"),
        ("benchmark", "eval/b/accuracy"),
        ("judge", "eval/a/judge_mean"),
        ("judge_dim", "eval/a/judge/x"),
        ("held_out", "val/rewards/accuracy/Rq"),
        ("held_out", "val/rewards/accuracy/Ra"),
        ("held_out", "val/rewards/accuracy/whole"),
    ]


def test_held_out_falls_back_to_val_after_only_without_val() -> None:
    after = _run({"val_after/rewards/accuracy/Mt": 0.7})
    assert held_out_segments([after]) == ("val_after/rewards/accuracy/", ["Mt"])
    both = _run({"val_after/rewards/accuracy/Mt": 0.7, "val/rewards/accuracy/Rq": 0.6})
    assert held_out_segments([both]) == ("val/rewards/accuracy/", ["Rq"])
    assert held_out_segments([_run({})])[1] == []


def test_cell_formats() -> None:
    assert fmt_stats(SeedStats(0.41234, 0.0211, 3)) == "0.412 ± 0.021 (n=3)"
    assert fmt_stats(SeedStats(0.5, math.nan, 1)) == "0.500 (n=1)"
    assert fmt_stats(SeedStats(math.nan, math.nan, 0)) == "—"
    assert (fmt_p(0.0004), fmt_p(0.031234), fmt_p(math.nan)) == ("<0.001", "0.0312", "n/a")
