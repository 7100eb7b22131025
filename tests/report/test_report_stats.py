"""Report statistics against hand-computed values and independent references (scipy, normal theory)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from hipo.report.stats import compare, paired_bootstrap, pool_seeds, seed_stats, sign_test
from hipo.report.tables import verdict


def test_seed_stats_hand_values() -> None:
    """0.7, 0.7, 0.6: mean 2/3; deviations 1/30, 1/30, -2/30 -> var = (1+1+4)/900/2 = 1/300, std = 0.057735."""
    s = seed_stats([0.7, 0.7, 0.6])
    assert s.mean == pytest.approx(2 / 3) and s.std == pytest.approx(math.sqrt(1 / 300)) and s.n == 3
    one = seed_stats([0.4])
    assert one.mean == 0.4 and math.isnan(one.std) and one.n == 1
    assert seed_stats([]).n == 0 and math.isnan(seed_stats([]).mean)


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=20))
@settings(max_examples=50, deadline=None)
def test_seed_stats_matches_statistics_module(values: list[float]) -> None:
    s = seed_stats(values)
    assert s.mean == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert s.std == pytest.approx(statistics.stdev(values), abs=1e-6)


def test_pool_seeds_means_over_the_seeds_that_saw_a_problem() -> None:
    """a: (1 + 0 + 1)/3 = 2/3; b: (1 + 1)/2 = 1 (seed 2 skipped it); c: only seed 2 -> 0."""
    pooled = pool_seeds([{"a": 1, "b": 1}, {"a": 0, "b": 1}, {"a": 1, "c": 0}])
    assert pooled == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 0.0})


@pytest.mark.parametrize(
    ("better", "worse", "expected"),
    [
        (10, 0, 2 / 1024),  # 2 * C(10,0) / 2^10
        (8, 2, 2 * (1 + 10 + 45) / 1024),  # 2 * (C(10,0)+C(10,1)+C(10,2)) / 2^10 = 0.109375
        (2, 1, 1.0),  # 2 * (C(3,0)+C(3,1)) / 8 = 1
        (0, 0, 1.0),  # no discordant problem
    ],
)
def test_sign_test_hand_values(better: int, worse: int, expected: float) -> None:
    diffs = [0.5] * better + [-1.0] * worse + [0.0] * 4  # ties do not count
    assert sign_test(diffs) == (better, worse, pytest.approx(expected))


@given(st.integers(0, 40), st.integers(0, 40))
@settings(max_examples=60, deadline=None)
def test_sign_test_matches_scipy_binomtest(better: int, worse: int) -> None:
    _, _, p = sign_test([1.0] * better + [-1.0] * worse)
    expected = 1.0 if better + worse == 0 else binomtest(better, better + worse, 0.5).pvalue
    assert p == pytest.approx(expected, rel=1e-9)


def test_bootstrap_two_problems_exact_distribution() -> None:
    """diffs (1, 0): a resample's mean is 0, 0.5, 1 with prob 1/4, 1/2, 1/4 -> CI [0, 1], p = 2 * 1/4 = 0.5."""
    low, high, p = paired_bootstrap([1.0, 0.0], n_resamples=10_000, seed=3)
    assert (low, high) == (0.0, 1.0)
    assert p == pytest.approx(0.5, abs=0.03)


def test_bootstrap_matches_normal_theory_and_is_seeded() -> None:
    """For m = 400 iid differences the percentile CI ≈ mean ± 1.96 sd / sqrt(m) (sd with ddof 0)."""
    diffs = np.random.default_rng(11).normal(0.05, 0.5, size=400)
    low, high, p = paired_bootstrap(diffs, n_resamples=10_000, seed=0)
    half = 1.96 * diffs.std() / math.sqrt(diffs.size)
    assert low == pytest.approx(diffs.mean() - half, abs=0.1 * half)
    assert high == pytest.approx(diffs.mean() + half, abs=0.1 * half)
    z = diffs.mean() / (diffs.std() / math.sqrt(diffs.size))
    normal_p = math.erfc(abs(z) / math.sqrt(2))
    assert p == pytest.approx(normal_p, abs=0.03)
    assert paired_bootstrap(diffs, seed=0) == (low, high, p)
    assert paired_bootstrap(diffs, seed=1) != (low, high, p)


def test_bootstrap_constant_positive_difference() -> None:
    low, high, p = paired_bootstrap([0.25] * 7, n_resamples=500)
    assert low == pytest.approx(0.25) and high == pytest.approx(0.25) and p == 0.0


def test_compare_seed_t_test_hand_values() -> None:
    """Per seed over the 10 shared problems: hipo 0.7, 0.7, 0.6; dpo 0.5, 0.5, 0.5. Δ = 1/6, SE = sqrt((1/300)/3)
    = 1/30, t = 5 on 4 df: p = 0.00749 (Student t), 95 % CI = Δ ± 2.7764/30. The sign test over the pooled
    problems: p0 -1/3, p5 +1, p6 +1 -> 2 up, 1 down, p = 2 · (C(3,0) + C(3,1)) / 8 = 1."""
    problems = [f"p{i}" for i in range(10)]
    dpo = [{p: float(i < 5) for i, p in enumerate(problems)}] * 3
    hipo = [{p: float(i < 7) for i, p in enumerate(problems)}] * 2 + [
        {p: float(0 < i < 7) for i, p in enumerate(problems)}
    ]
    c = compare([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], hipo, dpo)  # with records, the logged values are not used
    assert c.test == "seeds" and c.diff == pytest.approx(1 / 6) and c.p_value == pytest.approx(0.0074904, rel=1e-4)
    assert c.ci_low == pytest.approx(1 / 6 - 2.7764 / 30, abs=2e-4) and c.significant
    assert (c.n_problems, c.n_better, c.n_worse, c.n_unpaired) == (10, 2, 1, 0) and c.p_sign == pytest.approx(1.0)


def test_compare_pairs_runs_by_seed_when_both_sides_ran_the_same_seeds() -> None:
    """Seeds shift both methods alike (0.5, 0.7, 0.6 vs 0.45, 0.66, 0.54, listed in another order): per-seed
    differences 0.05, 0.04, 0.06 -> Δ = 0.05, SE = 0.01/sqrt(3), t = 8.66 on 2 df: p = 0.01307. Unpaired, the seed
    spread (sd 0.1) hides it: p = 0.56."""
    method, baseline = [0.5, 0.7, 0.6], [0.54, 0.45, 0.66]
    paired = compare(method, baseline, method_seeds=["0", "1", "2"], baseline_seeds=["2", "0", "1"])
    assert paired.test == "seeds-paired" and paired.diff == pytest.approx(0.05)
    assert paired.p_value == pytest.approx(0.013072, rel=1e-3) and paired.significant
    assert paired.mde == pytest.approx((4.3027 + 1.0607) * 0.01 / math.sqrt(3), rel=2e-3)
    unpaired = compare(method, baseline, method_seeds=["0", "1", "2"], baseline_seeds=["3", "4", "5"])
    assert unpaired.test == "seeds" and unpaired.p_value > 0.5 and not unpaired.significant
    assert compare(method, baseline).test == "seeds"  # no seed labels: unpaired
    assert compare(method, baseline, method_seeds=["0", "0", "1"], baseline_seeds=["0", "1", "1"]).test == "seeds"


def test_seed_mde_is_never_finer_than_the_problems_resolve() -> None:
    """Every seed: the method wins the same 2 of 40 problems (per-seed Δ = 0.05 in all 3 seeds, zero spread).
    Paired by seed the t-based MDE is 0; the floor is the paired MDE over the 40 pooled differences:
    (1.95996 + 0.84162) · sd([1, 1, 0 × 38]) / sqrt(40), sd = sqrt((2 - 40 · 0.05²) / 39)."""
    problems = [f"p{i}" for i in range(40)]
    baseline = [{p: float(i < 20) for i, p in enumerate(problems)}] * 3
    method = [{p: float(i < 22) for i, p in enumerate(problems)}] * 3
    seeds = ["0", "1", "2"]
    c = compare([0.0] * 3, [0.0] * 3, method, baseline, method_seeds=seeds, baseline_seeds=seeds)
    spread = math.sqrt((2 - 40 * 0.05**2) / 39)
    assert c.test == "seeds-paired" and c.diff == pytest.approx(0.05) and c.p_value == 0.0
    assert c.mde == pytest.approx((1.959964 + 0.841621) * spread / math.sqrt(40), rel=1e-5)
    same = compare([0.0] * 3, [0.0] * 3, baseline, baseline, method_seeds=seeds, baseline_seeds=seeds)
    assert same.diff == 0.0 and same.mde == pytest.approx(2.801585 / 40, rel=1e-5)  # one discordant problem of 40


def test_compare_paired_bootstrap_with_one_seed_on_a_side() -> None:
    """hipo one seed correct on p0..p27, dpo pooled over 3 seeds on p0..p19 -> Δ = 0.2 over 40 problems, 8 up."""
    problems = [f"p{i}" for i in range(40)]
    dpo = [{p: float(i < 20) for i, p in enumerate(problems)}] * 3
    c = compare([0.7], [0.5, 0.5, 0.5], [{p: float(i < 28) for i, p in enumerate(problems)}], dpo, n_resamples=2000)
    assert c.test == "paired" and c.diff == pytest.approx(0.2) and (c.n_better, c.n_worse) == (8, 0)
    assert c.ci_low <= c.diff <= c.ci_high
    # p < 0.05 says these runs differ; with one seed the configs are not called different
    assert c.p_value < 0.05 and c.runs_differ and not c.significant and verdict(c) == "runs differ (1 seed)"


def test_compare_seed_values_without_records() -> None:
    """No records: the t-test over the logged values, no sign test; one seed on a side and none: no test."""
    c = compare([0.7, 0.7, 0.6], [0.5, 0.5, 0.5], None, [{"p": 1.0}])
    assert c.test == "seeds" and c.diff == pytest.approx(1 / 6) and c.p_value == pytest.approx(0.0074904, rel=1e-4)
    assert math.isnan(c.p_sign) and c.n_problems == 0
    untested = compare([0.7], [0.5, 0.5, 0.5])
    assert untested.test == "none" and math.isnan(untested.p_value) and not untested.significant
    exact = compare([0.6, 0.6], [0.5, 0.5])  # seeds that agree exactly: the difference is exact
    assert exact.p_value == 0.0 and compare([0.5, 0.5], [0.5, 0.5]).p_value == 1.0


def test_compare_pairs_only_shared_problems() -> None:
    """Shared {b}: Δ = 1 - 0 = 1; a and c are evaluated by one side only -> 2 unpaired."""
    c = compare([1.0], [0.0], [{"a": 1.0, "b": 1.0}], [{"b": 0.0, "c": 0.0}], n_resamples=100)
    assert c.diff == 1.0 and c.n_problems == 1 and c.n_unpaired == 2
