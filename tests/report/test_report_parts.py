"""Parts of `hipo report` that need no MLflow store: naming the baseline, the benchmarks found in the runs, and the
runs listed as left out or written to runs.csv. (Reports of a sweep in a real store: tests/report/test_report_build.py.)
"""

from __future__ import annotations

import csv
from pathlib import Path

from hipo.report.build import _excluded_line, _resolve_baseline, _write_runs_csv
from hipo.report.collect import CollectedRuns, RunRecord, benchmarks_of


def _run(run_id: str, method: str, status: str = "FINISHED", **tags: str) -> RunRecord:
    metrics = {"eval/gsm8k/accuracy": 0.5, "eval/gsm8k/judge/correctness": 3.0, "eval/math500/accuracy": 0.2}
    return RunRecord(run_id, f"{method}-seed0", status, method, "0", metrics, {"hipo.loss": "dpo", **tags})


def test_the_baseline_is_a_method_or_the_one_method_of_that_loss() -> None:
    by_method = {"dpo-cons": [_run("a", "dpo-cons")], "hipo": [_run("b", "hipo", **{"hipo.loss": "hipo"})]}
    assert _resolve_baseline("hipo", by_method) == "hipo"
    assert _resolve_baseline("dpo", by_method) == "dpo-cons"  # the only method whose runs all trained with dpo
    assert _resolve_baseline("kto", by_method) is None and _resolve_baseline(None, by_method) is None
    by_method["dpo-robust"] = [_run("c", "dpo-robust")]
    assert _resolve_baseline("dpo", by_method) is None  # two methods of that loss: no guess


def test_benchmarks_are_the_accuracy_metrics_of_any_run() -> None:
    assert benchmarks_of([_run("a", "dpo")]) == ["gsm8k", "math500"]  # judge scores are not benchmarks
    assert benchmarks_of([]) == []


def test_left_out_runs_are_listed_with_their_error(tmp_path: Path) -> None:
    failed = _run("f1", "hipo", status="FAILED", **{"hipo.error": "RuntimeError: diverged"})
    assert _excluded_line(failed) == "- hipo-seed0 (hipo, seed 0): FAILED, run f1: `RuntimeError: diverged`"
    assert _excluded_line(_run("k1", "dpo", status="KILLED")) == "- dpo-seed0 (dpo, seed 0): KILLED, run k1"
    collected = CollectedRuns([_run("a", "dpo")], [failed], None, ["1"], "experiment hipo")
    with _write_runs_csv(collected, tmp_path / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["run_id"], r["status"], r["in_statistics"], r["error"]) for r in rows] == [
        ("a", "FINISHED", "True", ""),
        ("f1", "FAILED", "False", "RuntimeError: diverged"),
    ]
