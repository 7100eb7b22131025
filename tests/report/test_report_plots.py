"""Plot helpers: the seed band arithmetic and that each plot writes a real PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from hipo.report.plots import band, plot_bars, plot_training_curves, plot_weights


def test_band_hand_values() -> None:
    """Step 0: values 1, 3 -> mean 2, std sqrt(2) (ddof 1); step 1: only 2 -> mean 2, std 0; step 2: 4, 6, 8 -> 6, 2."""
    steps, mean, std = band([[(0, 1.0), (1, 2.0), (2, 4.0)], [(0, 3.0), (2, 6.0)], [(2, 8.0)]])
    assert steps.tolist() == [0, 1, 2]
    assert mean.tolist() == pytest.approx([2.0, 2.0, 6.0])
    assert std.tolist() == pytest.approx([math.sqrt(2), 0.0, 2.0])


def _is_png_with_content(path: Path) -> bool:
    image = imread(path)
    return image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and float(np.std(image)) > 0.01


@pytest.mark.slow  # renders every plot with matplotlib
def test_each_plot_writes_a_png(tmp_path: Path) -> None:
    hist = [[(s, 0.1 * s + 0.01 * seed) for s in range(5)] for seed in range(3)]
    curves = {"margin": {"Mt": {"dpo": hist, "hipo": hist}}, "accuracy": {"Mt": {"hipo": hist}, "Ra": {"dpo": hist}}}
    paths = [
        plot_training_curves(curves, ["Mt", "Ra"], ["dpo", "hipo"], tmp_path / "curves.png"),
        plot_weights({"hipo-learned": {"Rq": hist, "Mt": hist}}, tmp_path / "weights.png"),
        plot_bars(
            {"dpo": {"a": [0.5, 0.6]}, "hipo": {"a": [0.7], "b": []}}, ["a", "b"], tmp_path / "bars.png", "t", "y"
        ),
    ]
    for path in paths:
        assert _is_png_with_content(path), path
