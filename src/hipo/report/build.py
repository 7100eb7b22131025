"""`build_report`: the runs of a sweep or experiment -> Markdown/CSV tables and PNG plots (+ parent-run artifacts)."""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hipo.report.collect import (
    CollectedRuns,
    RunRecord,
    benchmarks_of,
    collect_runs,
    metric_history,
)
from hipo.report.plots import History, plot_bars, plot_training_curves, plot_weights
from hipo.report.records import RunRecords
from hipo.report.tables import (
    Row,
    add_judge_means,
    build_rows,
    comparison_markdown,
    held_out_segments,
    segment_sort_key,
    select_metrics,
    summary_markdown,
    write_csv,
)

log = logging.getLogger(__name__)

STATISTICS_NOTE = (
    "Cells are mean ± sample std (ddof 1) of each run's final value over seeds (n = finished runs). Δ compares a "
    "method with the baseline. With ≥ 2 seeds on both sides the test is a t-test over seeds: each seed's value is "
    "its mean over the problems (benchmark problems, held-out pairs) that every seed of both sides has a record of, "
    "else its logged final value; runs pair by seed when both sides ran the same seeds (test `seeds-paired`), else "
    "not (test `seeds`); the 95% CI is Δ ± t·SE and p (test) is two-sided Student-t. With one seed on a side and "
    "per-problem records on both, the test is a paired bootstrap over problems ({resamples} resamples, seed {seed}; "
    "test `paired`), blind to seed-to-seed variation: its verdict is at most 'runs differ (1 seed)'. p (sign, seeds "
    "pooled) is the exact two-sided sign test over the discordant problems: it ignores seed variation and decides "
    "nothing (two seed sets of one config read p < 0.001 there in experiments/control_positive). 'problems' counts "
    "the problems tested (+ better / − worse). The MDE is the smallest |Δ| the test finds with 80 % power at level "
    "0.05; a difference is called only where p (test) < 0.05. Statistics: `hipo.report.stats`."
)


@dataclass
class ReportResult:
    """Files written by :func:`build_report`.

    Attributes:
        out_dir: folder holding everything.
        markdown, csv, runs_csv: ``report.md``, ``report.csv`` (long format), ``runs.csv`` (every run + status).
        plots: plot name -> PNG (only the plots whose metrics exist).
        notes: what was missing or skipped.
        parent_run_id: the parent run that received the artifacts under ``report/`` (None: not logged).
        rows: the table rows (for programmatic use).
    """

    out_dir: Path
    markdown: Path
    csv: Path
    runs_csv: Path
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
    rows: list[Row] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """Every written file."""
        return [self.markdown, self.csv, self.runs_csv, *self.plots.values()]


def _resolve_baseline(baseline: str | None, by_method: dict[str, list[RunRecord]]) -> str | None:
    """``baseline`` if it is a method; else the single method whose runs all have ``hipo.loss == baseline``."""
    if not baseline or baseline in by_method:
        return baseline or None
    matches = [m for m, runs in by_method.items() if all(r.tags.get("hipo.loss") == baseline for r in runs)]
    return matches[0] if len(matches) == 1 else None


def _histories(
    tracking_uri: str, by_method: dict[str, list[RunRecord]], prefix: str
) -> dict[str, dict[str, list[History]]]:
    """``{name: {method: [per-seed history]}}`` for every metric ``<prefix><name>`` any run logged."""
    out: dict[str, dict[str, list[History]]] = {}
    for method, runs in by_method.items():
        for run in runs:
            for key in sorted(k for k in run.metrics if k.startswith(prefix)):
                history = metric_history(tracking_uri, run.run_id, key)
                if history:
                    out.setdefault(key[len(prefix) :], {}).setdefault(method, []).append(history)
    return out


def _seed_values(by_method: dict[str, list[RunRecord]], keys: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """``{method: {category: [final value per seed]}}`` for ``keys`` = {category: metric key}."""
    return {
        method: {cat: [r.metrics[key] for r in runs if key in r.metrics] for cat, key in keys.items()}
        for method, runs in by_method.items()
    }


def _make_plots(
    tracking_uri: str, by_method: dict[str, list[RunRecord]], out_dir: Path, notes: list[str]
) -> dict[str, Path]:
    runs = [r for rs in by_method.values() for r in rs]
    methods = list(by_method)
    plots: dict[str, Path] = {}
    curves = {q: _histories(tracking_uri, by_method, f"train/rewards/{q}/") for q in ("margin", "accuracy")}
    curves = {q: c for q, c in curves.items() if c}
    if curves:
        segments = sorted({s for c in curves.values() for s in c}, key=segment_sort_key)
        plots["training_curves"] = plot_training_curves(curves, segments, methods, out_dir / "training_curves.png")
    else:
        notes.append("no `train/rewards/{margin,accuracy}/<segment>` metrics: training-curve plot skipped")
    weights = _histories(tracking_uri, by_method, "train/weight/")
    if weights:
        names = sorted(weights, key=segment_sort_key)
        per_method = {m: {name: weights[name][m] for name in names if m in weights[name]} for m in methods}
        per_method = {m: w for m, w in per_method.items() if w}
        plots["weights"] = plot_weights(per_method, out_dir / "weights.png")
    else:
        notes.append("no `train/weight/<name>` metrics: weights plot skipped")
    benches = benchmarks_of(runs)
    if benches:
        values = _seed_values(by_method, {b: f"eval/{b}/accuracy" for b in benches})
        plots["benchmarks"] = plot_bars(
            values, benches, out_dir / "benchmarks.png", "Benchmark accuracy (mean ± std over seeds)", "accuracy"
        )
    else:
        notes.append("no `eval/<benchmark>/accuracy` metrics: benchmark table columns and bars skipped")
    prefix, segments = held_out_segments(runs)
    if segments:
        values = _seed_values(by_method, {s: f"{prefix}{s}" for s in segments})
        plots["held_out_accuracy"] = plot_bars(
            values,
            segments,
            out_dir / "held_out_accuracy.png",
            f"Held-out preference accuracy per segment ({prefix}<segment>, final)",
            "preference accuracy",
            chance=0.5,
        )
    else:
        notes.append("no `val/rewards/accuracy/<segment>` metrics: held-out columns and bars skipped")
    return plots


def _missing_notes(rows: Sequence[Row], baseline: str | None) -> list[str]:
    notes = []
    for row in rows:
        if row.stats.n == 0:
            notes.append(f"`{row.metric.key}` is missing for method {row.method}")
    unrecorded = sorted({r.metric.label for r in rows if r.comparison and r.comparison.n_problems == 0
                         and r.metric.kind in ("benchmark", "held_out")})  # fmt: skip
    if unrecorded:
        notes.append(
            f"no per-problem records (`eval/<bench>/samples.json`, `held_out/pairs.csv`) shared by every run of a "
            f"method and of {baseline} on: {', '.join(unrecorded)}; the runs' logged values are compared there "
            "(t-test over seeds, or untested with one seed on a side)"
        )
    return notes


def _write_runs_csv(collected: CollectedRuns, path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "name", "method", "seed", "status", "in_statistics", "error"])
        for r in [*collected.runs, *collected.excluded]:
            error = r.tags.get("hipo.error", "")
            writer.writerow([r.run_id, r.name, r.method, r.seed or "", r.status, r.status == "FINISHED", error])
    return path


def _excluded_line(run: RunRecord) -> str:
    """One failed / killed / unfinished run with its error, if it recorded one."""
    error = run.tags.get("hipo.error")
    why = f": `{error[:300]}`" if error else ""
    return f"- {run.name} ({run.method}, seed {run.seed}): {run.status}, run {run.run_id}{why}"


def _markdown(
    collected: CollectedRuns,
    rows: Sequence[Row],
    methods: Sequence[str],
    baseline: str | None,
    plots: dict[str, Path],
    notes: Sequence[str],
    n_resamples: int,
    seed: int,
) -> str:
    counts = ", ".join(f"{m}: {sum(r.method == m for r in collected.runs)}" for m in methods)
    parts = [
        f"# Report: {collected.description}",
        "",
        f"Generated {dt.datetime.now().isoformat(timespec='seconds')}; parent run: {collected.parent_run_id or 'none'}"
        f"; baseline: {baseline or 'none'}.",
        f"Finished runs per method: {counts}.",
    ]
    if collected.excluded:
        parts += ["", f"## Runs left out of the statistics ({len(collected.excluded)}, not FINISHED)", ""]
        parts += [_excluded_line(r) for r in collected.excluded]
    sections = [
        ("Results (mean ± std over seeds)", summary_markdown(rows, methods, ("benchmark", "judge", "held_out"))),
        (f"Differences to {baseline}", comparison_markdown(rows, baseline or "", ("benchmark", "judge", "held_out"))),
        ("Judge rubric dimensions", summary_markdown(rows, methods, ("judge_dim",))),
    ]
    for title, body in sections:
        if body:
            parts += ["", f"## {title}", "", body]
    parts += ["", "## Statistics", "", STATISTICS_NOTE.format(resamples=n_resamples, seed=seed)]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{name}]({path.name})" for name, path in plots.items()]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(parts) + "\n"


def _group_by_method(
    collected: CollectedRuns, baseline: str | None, notes: list[str]
) -> tuple[dict[str, list[RunRecord]], str | None]:
    """(``{method: finished runs}`` with the baseline method first, the resolved baseline or None).

    A ``baseline`` that names no method (see :func:`_resolve_baseline`) is said in ``notes``.
    """
    by_method = {m: [r for r in collected.runs if r.method == m] for m in collected.methods}
    resolved = _resolve_baseline(baseline, by_method)
    if baseline and resolved is None:
        notes.append(f"baseline {baseline!r} is not among the methods {list(by_method)}: no differences computed")
    if resolved:
        by_method = {resolved: by_method[resolved], **{m: rs for m, rs in by_method.items() if m != resolved}}
    return by_method, resolved


def _log_to_parent(tracking_uri: str, parent_run_id: str, paths: Sequence[Path]) -> None:
    """Logs every written file as an artifact under ``report/`` of the sweep's parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in paths:
        client.log_artifact(parent_run_id, str(path), "report")


def build_report(
    tracking_uri: str,
    experiment_name: str | None = None,
    sweep_id: str | None = None,
    parent_run_id: str | None = None,
    *,
    out_dir: str | Path,
    baseline: str | None = "dpo",
    group_by: str = "hipo.method",
    n_resamples: int = 10_000,
    seed: int = 0,
    log_to_parent: bool = True,
    hipo_experiment: str | None = None,
) -> ReportResult:
    """Collects the runs of a sweep or experiment and writes ``report.md``, ``report.csv``, ``runs.csv`` and plots.

    Args:
        tracking_uri: MLflow store (e.g. ``sqlite:///mlflow.db``).
        experiment_name, sweep_id, parent_run_id, hipo_experiment: which runs (MLflow experiment, ``hipo.sweep_id``,
            parent run, experiment config name = tag ``hipo.experiment``; see
            :func:`hipo.report.collect.collect_runs`).
        out_dir: output folder (created).
        baseline: method to compare against (a ``group_by`` value, or a ``hipo.loss`` value naming exactly one
            method); None or absent: no comparisons (said in the notes).
        group_by: tag that names the method (falls back to ``hipo.loss``).
        n_resamples, seed: paired bootstrap settings (see :mod:`hipo.report.stats`).
        log_to_parent: also log every file as artifacts ``report/...`` of the sweep's parent run, when there is one.

    Returns:
        the written files. Failed / unfinished runs are listed in ``report.md`` and ``runs.csv`` but excluded from
        statistics; missing metrics skip their plot and are named in the notes.
    """
    collected = collect_runs(tracking_uri, experiment_name, sweep_id, parent_run_id, group_by, hipo_experiment)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if not collected.runs:
        notes.append("no FINISHED runs: nothing to summarize")
    add_judge_means(collected.runs)
    by_method, resolved = _group_by_method(collected, baseline, notes)
    methods = list(by_method)
    specs = select_metrics(collected.runs)
    rows = build_rows(by_method, specs, resolved, RunRecords(tracking_uri), n_resamples=n_resamples, seed=seed)
    notes += _missing_notes(rows, resolved)
    plots = _make_plots(tracking_uri, by_method, out, notes) if collected.runs else {}
    csv_path = write_csv(rows, resolved, out / "report.csv")
    runs_csv = _write_runs_csv(collected, out / "runs.csv")
    md_path = out / "report.md"
    md_path.write_text(_markdown(collected, rows, methods, resolved, plots, notes, n_resamples, seed))
    result = ReportResult(out, md_path, csv_path, runs_csv, plots, notes, None, rows)
    if log_to_parent and collected.parent_run_id:
        _log_to_parent(tracking_uri, collected.parent_run_id, result.paths)
        result.parent_run_id = collected.parent_run_id
    log.info("report written to %s (%d files)", out, len(result.paths))
    return result
