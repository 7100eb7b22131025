"""PNG plots of a report (matplotlib's Agg canvas, no display, no global backend switch).

A *history* is ``[(step, value), ...]`` of one metric in one run; a method's curve is the mean over its seeds at
each step any seed logged, with a ± sample-std band (ddof = 1) where at least two seeds logged that step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

History = Sequence[tuple[int, float]]
PER_METHOD_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def band(histories: Sequence[History]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds per step.

    Args:
        histories: one ``[(step, value)]`` per seed.

    Returns:
        steps [T], mean [T], std [T] (0 where fewer than two seeds logged the step).
    """
    by_step: dict[int, list[float]] = {}
    for history in histories:
        for step, value in history:
            by_step.setdefault(int(step), []).append(float(value))
    steps = np.array(sorted(by_step), dtype=np.int64)
    mean = np.array([np.mean(by_step[s]) for s in steps], dtype=np.float64)
    std = np.array([np.std(by_step[s], ddof=1) if len(by_step[s]) > 1 else 0.0 for s in steps], dtype=np.float64)
    return steps, mean, std


def _color(methods: Sequence[str], method: str) -> str:
    return PER_METHOD_COLORS[list(methods).index(method) % len(PER_METHOD_COLORS)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _draw_band(ax, histories: Sequence[History], label: str, color: str) -> None:
    steps, mean, std = band(histories)
    ax.plot(steps, mean, color=color, label=f"{label} (n={len(histories)})", linewidth=1.5)
    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def plot_training_curves(
    curves: Mapping[str, Mapping[str, Mapping[str, Sequence[History]]]],
    segments: Sequence[str],
    methods: Sequence[str],
    path: Path,
) -> Path:
    """Reward margin (top row) and preference accuracy (bottom row) vs step, one column per segment.

    Args:
        curves: ``curves[quantity][segment][method]`` = per-seed histories, quantity in {margin, accuracy}.
        segments: column order (e.g. Rq, Mt, Ra, whole).
        methods: legend order / colours.
        path: the PNG to write.
    """
    quantities = [q for q in ("margin", "accuracy") if q in curves]
    fig = Figure(figsize=(3.6 * len(segments), 3.0 * len(quantities)), layout="constrained")
    axes = fig.subplots(len(quantities), len(segments), squeeze=False)
    for row, quantity in enumerate(quantities):
        for col, segment in enumerate(segments):
            ax = axes[row][col]
            for method in methods:
                histories = curves[quantity].get(segment, {}).get(method)
                if histories:
                    _draw_band(ax, histories, method, _color(methods, method))
            ax.set_title(f"{segment}: reward {quantity}", fontsize=10)
            ax.set_xlabel("step")
            if quantity == "accuracy":
                ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Training curves per segment (mean ± std over seeds)")
    return _save(fig, path)


def plot_weights(weights: Mapping[str, Mapping[str, Sequence[History]]], path: Path) -> Path:
    """Segment weights vs step, one subplot per method that logged ``train/weight/<name>``.

    Args:
        weights: ``weights[method][weight name]`` = per-seed histories.
        path: the PNG to write.
    """
    methods = list(weights)
    fig = Figure(figsize=(4.5 * len(methods), 3.4), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, method in zip(axes, methods, strict=True):
        names = list(weights[method])
        for name in names:
            _draw_band(ax, weights[method][name], name, _color(names, name))
        ax.set_title(f"{method}: weights", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Segment weights over training (mean ± std over seeds)")
    return _save(fig, path)


def plot_bars(
    values: Mapping[str, Mapping[str, Sequence[float]]],
    categories: Sequence[str],
    path: Path,
    title: str,
    ylabel: str,
    chance: float | None = None,
) -> Path:
    """Grouped bars: one group per category, one bar per method at the seed mean, error bar = sample std.

    Args:
        values: ``values[method][category]`` = per-seed final values (missing / empty: no bar).
        categories: group order (benchmarks or segments).
        path: the PNG to write.
        title, ylabel: labels.
        chance: draws a dotted reference line (0.5 for preference accuracy).
    """
    methods = list(values)
    width = 0.8 / max(1, len(methods))
    fig = Figure(figsize=(max(4.0, 0.7 * len(categories) * max(1, len(methods)) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(categories), dtype=np.float64)
    for i, method in enumerate(methods):
        means, errs = [], []
        for category in categories:
            seeds = list(values[method].get(category, []))
            means.append(float(np.mean(seeds)) if seeds else math.nan)
            errs.append(float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0)
        n = max((len(values[method].get(c, [])) for c in categories), default=0)
        offset = (i - (len(methods) - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=errs, capsize=3, label=f"{method} (n≤{n})", color=_color(methods, method))
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, list(categories))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
