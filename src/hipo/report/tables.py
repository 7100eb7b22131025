"""Report tables: which metrics, one row per (method, metric) with seed statistics and the baseline comparison."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hipo.report.collect import RunRecord, benchmarks_of
from hipo.report.stats import Comparison, SeedStats, compare, seed_stats

SEGMENT_ORDER = ("Rq", "Mt", "Ra", "whole")
JUDGE_EXCLUDED = ("verbosity",)  # a length measure, not a quality dimension: not averaged into the judge mean
HELD_OUT_PREFIXES = ("val/rewards/accuracy/", "val_after/rewards/accuracy/")

RecordsLoader = Callable[[str, "MetricSpec"], "Mapping[str, float] | None"]


@dataclass(frozen=True)
class MetricSpec:
    """A reported metric: MLflow ``key``, short ``label``, ``kind`` (benchmark | judge | judge_dim | held_out).

    Held-out metrics also name their ``term`` (Rq, Mt, Ra, whole) and ``statistic`` (accuracy | margin): each
    pair's record is that term's margin, or the accuracy it implies.
    """

    key: str
    label: str
    kind: str
    benchmark: str | None = None
    term: str | None = None
    statistic: str | None = None


@dataclass(frozen=True)
class Row:
    """One (method, metric) cell: seed statistics and, for non-baseline methods, the comparison."""

    method: str
    metric: MetricSpec
    stats: SeedStats
    comparison: Comparison | None


def add_judge_means(runs: Sequence[RunRecord]) -> None:
    """Adds ``eval/<bench>/judge_mean`` (mean over rubric dimensions, verbosity excluded) to each run's metrics."""
    for run in runs:
        dims: dict[str, list[float]] = {}
        for key, value in run.metrics.items():
            if not key.startswith("eval/") or "/judge/" not in key:
                continue
            bench, dimension = key[len("eval/") :].rsplit("/judge/", 1)
            if bench and dimension and "/" not in dimension and dimension not in JUDGE_EXCLUDED:
                dims.setdefault(bench, []).append(value)
        for bench, values in dims.items():
            run.metrics[f"eval/{bench}/judge_mean"] = sum(values) / len(values)


def segment_sort_key(name: str) -> tuple[int, str]:
    """Sort key putting Rq, Mt, Ra, whole first (in that order), other names after, alphabetically."""
    return (SEGMENT_ORDER.index(name) if name in SEGMENT_ORDER else len(SEGMENT_ORDER), name)


def held_out_segments(runs: Sequence[RunRecord]) -> tuple[str, list[str]]:
    """(key prefix, segment names in Rq/Mt/Ra/whole order) of the held-out preference accuracy metrics.

    ``val/rewards/accuracy/<segment>`` (final value) is used; ``val_after/...`` only when no run has ``val/``.
    """
    for prefix in HELD_OUT_PREFIXES:
        names = {k[len(prefix) :] for r in runs for k in r.metrics if k.startswith(prefix)}
        if names:
            return prefix, sorted(names, key=segment_sort_key)
    return HELD_OUT_PREFIXES[0], []


def select_metrics(runs: Sequence[RunRecord]) -> list[MetricSpec]:
    """The metrics of the report, in table order: benchmark accuracies, judge means, judge dimensions, held-out."""
    specs: list[MetricSpec] = []
    benches = benchmarks_of(runs)
    specs += [MetricSpec(f"eval/{b}/accuracy", f"{b} acc", "benchmark", b) for b in benches]
    keys = {k for r in runs for k in r.metrics}
    specs += [
        MetricSpec(f"eval/{b}/judge_mean", f"{b} judge", "judge", b) for b in benches if f"eval/{b}/judge_mean" in keys
    ]
    for bench in benches:
        prefix = f"eval/{bench}/judge/"
        for key in sorted(k for k in keys if k.startswith(prefix)):
            specs.append(MetricSpec(key, f"{bench} {key[len(prefix) :]}", "judge_dim", bench))
    prefix, segments = held_out_segments(runs)
    specs += [
        MetricSpec(f"{prefix}{s}", f"held-out acc {s}", "held_out", term=s, statistic="accuracy") for s in segments
    ]
    margin_prefix = prefix.replace("/accuracy/", "/margin/")
    specs += [
        MetricSpec(f"{margin_prefix}{s}", f"held-out margin {s}", "held_out", term=s, statistic="margin")
        for s in segments
        if f"{margin_prefix}{s}" in keys
    ]
    return specs


def build_rows(
    by_method: Mapping[str, Sequence[RunRecord]],
    metrics: Sequence[MetricSpec],
    baseline: str | None,
    load_records: RecordsLoader,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> list[Row]:
    """Seed statistics of every (method, metric) and the comparison of each non-baseline method to ``baseline``.

    Args:
        by_method: finished runs grouped by method (the baseline's runs included).
        metrics: from :func:`select_metrics`.
        baseline: the reference method, or None (no comparisons).
        load_records: ``(run_id, spec) -> {problem: value} | None``, a run's per-problem records of a benchmark
            or held-out metric (None: the run has none; judge metrics have none).
        n_resamples, seed: paired bootstrap settings.
    """
    cache: dict[tuple[str, MetricSpec], Mapping[str, float] | None] = {}

    def samples(runs: Sequence[RunRecord], spec: MetricSpec) -> list[Mapping[str, float]] | None:
        if spec.kind not in ("benchmark", "held_out"):
            return None
        out: list[Mapping[str, float]] = []
        for run in runs:
            key = (run.run_id, spec)
            if key not in cache:
                cache[key] = load_records(*key)
            records = cache[key]
            if records is None:
                return None  # one seed without records: the method's test uses the seeds' logged values
            out.append(records)
        return out

    rows: list[Row] = []
    for spec in metrics:
        base_runs = [r for r in by_method.get(baseline, []) if spec.key in r.metrics] if baseline else []
        base_values = [r.metrics[spec.key] for r in base_runs]
        for method, all_runs in by_method.items():
            runs = [r for r in all_runs if spec.key in r.metrics]
            values = [r.metrics[spec.key] for r in runs]
            comparison = None
            if baseline and method != baseline and values and base_values:
                comparison = compare(
                    values,
                    base_values,
                    samples(runs, spec),
                    samples(base_runs, spec),
                    n_resamples,
                    seed,
                    method_seeds=[r.seed for r in runs],
                    baseline_seeds=[r.seed for r in base_runs],
                )
            rows.append(Row(method, spec, seed_stats(values), comparison))
    return rows


def fmt(value: float, digits: int = 3, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (``+`` when ``signed``), ``n/a`` for nan."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_p(value: float) -> str:
    """A p-value: 3 significant digits, ``<0.001`` below, ``n/a`` for nan."""
    if math.isnan(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def fmt_stats(stats: SeedStats) -> str:
    """``mean ± std (n=k)``; ``—`` without values; ``mean (n=1)`` for one seed."""
    if stats.n == 0:
        return "—"
    if stats.n == 1:
        return f"{stats.mean:.3f} (n=1)"
    return f"{stats.mean:.3f} ± {stats.std:.3f} (n={stats.n})"


def summary_markdown(rows: Sequence[Row], methods: Sequence[str], kinds: Sequence[str]) -> str:
    """Methods × metrics (of the given kinds) as a Markdown table of ``mean ± std (n)``."""
    specs = list(dict.fromkeys(r.metric for r in rows if r.metric.kind in kinds))
    if not specs:
        return ""
    cell = {(r.method, r.metric): fmt_stats(r.stats) for r in rows}
    lines = ["| method | " + " | ".join(s.label for s in specs) + " |", "|---" * (len(specs) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(cell.get((m, s), "—") for s in specs) + " |" for m in methods]
    return "\n".join(lines)


def verdict(comparison: Comparison) -> str:
    """``different`` (a test over seeds with p < 0.05), ``runs differ (1 seed)`` (a one-seed bootstrap with
    p < 0.05: configs untested), else ``no |Δ| > MDE``; ``untested`` without a test."""
    if comparison.significant:
        return "different"
    if comparison.runs_differ:
        return "runs differ (1 seed)"
    if comparison.test == "none" or math.isnan(comparison.mde):
        return "untested"
    return f"no |Δ| > {fmt(comparison.mde)}"


def comparison_markdown(rows: Sequence[Row], baseline: str, kinds: Sequence[str]) -> str:
    """One line per (method, metric) with a comparison: Δ, 95 % CI, sign-test and test p, problems, MDE."""
    lines = [
        f"| method | metric | Δ vs {baseline} | 95% CI | p (sign, seeds pooled) | p (test) "
        "| problems (+/−) | test | MDE (80% power) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    count = 0
    for r in rows:
        c = r.comparison
        if c is None or r.metric.kind not in kinds:
            continue
        ci = "n/a" if math.isnan(c.ci_low) else f"[{fmt(c.ci_low, signed=True)}, {fmt(c.ci_high, signed=True)}]"
        problems = f"{c.n_problems} (+{c.n_better}/−{c.n_worse})" if c.n_problems else "n/a"
        lines.append(
            f"| {r.method} | {r.metric.label} | {fmt(c.diff, signed=True)} | {ci} | {fmt_p(c.p_sign)} "
            f"| {fmt_p(c.p_value)} | {problems} | {c.test} | {fmt(c.mde)} | {verdict(c)} |"
        )
        count += 1
    return "\n".join(lines) if count else ""


CSV_FIELDS = [
    "method", "metric", "label", "kind", "mean", "std", "n", "baseline", "diff", "ci_low", "ci_high",
    "p_sign", "p_value", "n_problems", "n_better", "n_worse", "n_unpaired", "test", "mde", "verdict",
]  # fmt: skip


def write_csv(rows: Sequence[Row], baseline: str | None, path: Path) -> Path:
    """All rows in long format (one line per method × metric); missing numbers are ``n/a``."""

    def num(value: float) -> str:
        return "n/a" if value is None or math.isnan(value) else repr(float(value))

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            c = r.comparison
            writer.writerow(
                {
                    "method": r.method,
                    "metric": r.metric.key,
                    "label": r.metric.label,
                    "kind": r.metric.kind,
                    "mean": num(r.stats.mean),
                    "std": num(r.stats.std),
                    "n": r.stats.n,
                    "baseline": baseline or "",
                    "diff": num(c.diff) if c else "n/a",
                    "ci_low": num(c.ci_low) if c else "n/a",
                    "ci_high": num(c.ci_high) if c else "n/a",
                    "p_sign": num(c.p_sign) if c else "n/a",
                    "p_value": num(c.p_value) if c else "n/a",
                    "n_problems": c.n_problems if c else 0,
                    "n_better": c.n_better if c else 0,
                    "n_worse": c.n_worse if c else 0,
                    "n_unpaired": c.n_unpaired if c else 0,
                    "test": c.test if c else "",
                    "mde": num(c.mde) if c else "n/a",
                    "verdict": verdict(c) if c else "",
                }
            )
    return path
