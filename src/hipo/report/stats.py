"""Statistics of a report: mean ± std over seeds, and each method's test against a baseline method.

Definitions (n = number of seeds, m = number of paired problems):

- **Seed summary**: mean and sample standard deviation (ddof = 1; undefined, shown ``n/a``, for n = 1) of one
  metric's final value over a method's finished runs.
- **Per-problem records** of a run: ``{problem id: value}``, a benchmark problem's correctness (its mean over drawn
  samples, or its ``correct`` flag) or a held-out pair's accuracy or margin on one term.
- **Per-problem correctness** of a method: for each problem id, the mean over the seeds (runs) that evaluated it.
- **Paired problems**: the union of problems each method evaluated (over its seeds), intersected between the
  method and the baseline; problems only one side evaluated are counted and left out.
- **Δ (paired)** = mean over paired problems of (method − baseline) per-problem correctness.
- **Seed t-test** (whenever both sides have ≥ 2 seeds): each seed gives one value, its mean over the problems
  every seed of both sides evaluated (with records) or its logged final value (without). Δ is the difference of
  the seed means; the 95 % interval is Δ ± t_{0.975, ν}·SE and p the two-sided Student-t p-value of Δ/SE.
  When both sides ran the same distinct seeds (tag ``hipo.seed``: the same LoRA init and data order), the runs
  pair by seed (test ``seeds-paired``): SE = s_d/√n over the per-seed differences, ν = n − 1. Otherwise (test
  ``seeds``) SE = √(s_a²/n_a + s_b²/n_b), ν = n_a + n_b − 2. This is the test of the report because a seed (its LoRA
  init, its data order) shifts a run on every problem at once: a test over problems with the seeds pooled counts
  that shift as evidence on each problem and calls two seeds of one config different. Measured on synthetic
  negative controls (200 problems, 3 vs 3 seeds, each seed shifting every success probability by N(0, σ²)),
  rate of "different" at level 0.05 for σ = 0 / 0.03 / 0.06: pooled paired bootstrap 3.7 % / 16 % / 34 %;
  a hierarchical bootstrap (problems and seeds resampled) 0.3 % / 1.7 % / 8 %; this t-test 4.9 % / 4.3 % / 5.1 %
  (tests/report/test_report_power.py), with the same power as the hierarchical bootstrap (83 % at Δ = 0.1).
  Paired by seed, with the seed shifts shared by both sides (σ = 0.04, 600 controls): 5.7 %.
- **Paired bootstrap** over problems (test ``paired``; when a side has one seed and both have records): 10,000
  resamples (seeded ``numpy.random.default_rng(seed)``) of the m problems with replacement; the 95 % interval is
  the 2.5 / 97.5 percentiles of the resampled Δ, the two-sided p-value ``min(1, 2·min(P*(Δ* ≤ 0), P*(Δ* ≥ 0)))``.
  With one seed it cannot see seed-to-seed variation: it says whether these two runs differ, not the configs, and
  the report never calls configs different from it (verdict ``runs differ (1 seed)``). The negative control
  showed why: one replica seed of DPO against DPO's 3 seeds gave held-out whole margin +0.205, p = 0.0016.
- **Sign test** (exact, two-sided; shown for both tests, decides nothing): over the discordant problems
  (per-problem difference ≠ 0; k of d favour the method), ``p = min(1, 2·Σ_{j ≤ min(k, d−k)} C(d, j) / 2^d)``;
  p = 1 when d = 0.
- **No test** (test ``none``): one seed on a side and no records: Δ = difference of the seed means, p ``n/a``.
- **MDE**: the minimal detectable effect at 80 % power (:mod:`hipo.report.power`), so that a comparison without a
  significant Δ reads "no difference larger than MDE". For a test over seeds with records it is never below the
  paired MDE over the shared problems (the seeds pooled): seeds whose differences agree exactly would otherwise
  report 0, a resolution the problems do not have. A comparison is called a difference when its test over
  seeds has p < 0.05 (its 95 % interval excludes 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hipo.report.power import ALPHA, POWER, paired_mde, seed_mde, t_quantile, t_two_sided_p

BOOTSTRAP_RESAMPLES = 10_000
SEED_TESTS = ("seeds", "seeds-paired")
_CHUNK = 1_000


@dataclass(frozen=True)
class SeedStats:
    """Mean, sample std (nan for n < 2) and count of one metric over seeds."""

    mean: float
    std: float
    n: int


def seed_stats(values: Sequence[float]) -> SeedStats:
    """Mean ± sample std (ddof = 1) of ``values``; nan std for a single value, nan mean for none."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return SeedStats(math.nan, math.nan, 0)
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    return SeedStats(float(array.mean()), std, int(array.size))


def pool_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``{problem: mean correctness over the seeds that evaluated it}`` (union of problems over seeds)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for records in per_seed:
        for problem, value in records.items():
            sums[problem] = sums.get(problem, 0.0) + float(value)
            counts[problem] = counts.get(problem, 0) + 1
    return {problem: sums[problem] / counts[problem] for problem in sums}


def sign_test(differences: Sequence[float]) -> tuple[int, int, float]:
    """Exact two-sided sign test on paired differences.

    Returns:
        (problems where the method is better, problems where it is worse, p-value).
    """
    better = sum(1 for d in differences if d > 0)
    worse = sum(1 for d in differences if d < 0)
    discordant = better + worse
    if discordant == 0:
        return better, worse, 1.0
    tail = sum(math.comb(discordant, j) for j in range(min(better, worse) + 1))
    return better, worse, min(1.0, 2.0 * tail / 2**discordant)


def paired_bootstrap(
    differences: Sequence[float], n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile 95 % interval and two-sided p-value of the mean of paired differences.

    Args:
        differences: [m] per-problem (method − baseline) correctness.
        n_resamples: bootstrap resamples of the m problems (with replacement).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        (ci_low, ci_high, p_value); nan for m = 0.
    """
    diffs = np.asarray(list(differences), dtype=np.float64)
    if diffs.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        index = rng.integers(0, diffs.size, size=(size, diffs.size))
        means[start : start + size] = diffs[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p_value = min(1.0, 2.0 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return float(low), float(high), p_value


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline on one metric.

    Attributes:
        diff: Δ (paired mean over problems, or difference of seed means in the fallback).
        ci_low, ci_high: bootstrap 95 % interval (nan in the fallback).
        p_sign, p_value: p-values (nan in the fallback, shown ``n/a``).
        n_problems: paired problems (0 in the fallback); n_better / n_worse: discordant problems by direction.
        n_unpaired: problems only one of the two evaluated.
        test: ``seeds`` (t-test over seeds), ``paired`` (bootstrap over problems, one seed on a side) or ``none``.
        mde: minimal detectable |Δ| at 80 % power and level 0.05 (nan when the sample sizes cannot give one).
    """

    diff: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_sign: float = math.nan
    p_value: float = math.nan
    n_problems: int = 0
    n_better: int = 0
    n_worse: int = 0
    n_unpaired: int = 0
    test: str = "none"
    mde: float = math.nan

    @property
    def significant(self) -> bool:
        """Whether the report calls the methods (their configs) different: a test over seeds with p < 0.05.

        A one-seed paired bootstrap can only say that two runs differ: a seed alone moves a run that much (the
        negative control of experiments/control_positive), so it never calls configs different.
        """
        return self.test in SEED_TESTS and self.p_value < ALPHA

    @property
    def runs_differ(self) -> bool:
        """A one-seed paired bootstrap with p < 0.05: these two runs differ (their configs are untested)."""
        return self.test == "paired" and self.p_value < ALPHA


def compare(
    method_values: Sequence[float],
    baseline_values: Sequence[float],
    method_samples: Sequence[Mapping[str, float]] | None = None,
    baseline_samples: Sequence[Mapping[str, float]] | None = None,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    method_seeds: Sequence[str | None] | None = None,
    baseline_seeds: Sequence[str | None] | None = None,
) -> Comparison:
    """Compares a method with the baseline (see the module docstring for the statistics).

    Args:
        method_values, baseline_values: the metric's final value per seed.
        method_samples, baseline_samples: per seed ``{problem id: value}`` (the same seeds, in the same order), or
            None/empty without records.
        n_resamples, seed: bootstrap settings.
        method_seeds, baseline_seeds: each run's seed label (same order as the values); when both sides ran the
            same distinct seeds, the t-test pairs the runs by seed.
    """
    if len(method_values) >= 2 and len(baseline_values) >= 2:
        order = _seed_pairing(method_seeds, baseline_seeds)
        if order is not None:  # run i of the method pairs with run order[i] of the baseline
            baseline_values = [baseline_values[i] for i in order]
            baseline_samples = [baseline_samples[i] for i in order] if baseline_samples else baseline_samples
        return _seed_t_test(method_values, baseline_values, method_samples, baseline_samples, order is not None)
    if method_samples and baseline_samples:
        a, b = pool_seeds(method_samples), pool_seeds(baseline_samples)
        shared = sorted(set(a) & set(b))
        if shared:
            diffs = [a[p] - b[p] for p in shared]
            low, high, p_boot = paired_bootstrap(diffs, n_resamples=n_resamples, seed=seed)
            better, worse, p_sign = sign_test(diffs)
            return Comparison(
                diff=float(np.mean(diffs)),
                ci_low=low,
                ci_high=high,
                p_sign=p_sign,
                p_value=p_boot,
                n_problems=len(shared),
                n_better=better,
                n_worse=worse,
                n_unpaired=len(set(a) ^ set(b)),
                test="paired",
                mde=paired_mde(diffs),
            )
    return Comparison(
        diff=seed_stats(method_values).mean - seed_stats(baseline_values).mean,
        mde=seed_mde(method_values, baseline_values),
    )


def problems_in_every_seed(*sides: Sequence[Mapping[str, float]]) -> list[str]:
    """Problems with a (non-nan) record in every seed of every side, sorted."""
    shared: set[str] | None = None
    for per_seed in sides:
        for records in per_seed:
            present = {p for p, v in records.items() if not math.isnan(float(v))}
            shared = present if shared is None else shared & present
    return sorted(shared or ())


def _seed_t_test(
    method_values: Sequence[float],
    baseline_values: Sequence[float],
    method_samples: Sequence[Mapping[str, float]] | None,
    baseline_samples: Sequence[Mapping[str, float]] | None,
    paired: bool,
) -> Comparison:
    """The t-test over seeds (paired by seed when ``paired``: run i of each side has the same seed); with records,
    each seed's value is its mean over the problems all seeds share."""
    problems: list[str] = []
    better = worse = unpaired = 0
    p_sign = problems_mde = math.nan
    if method_samples and baseline_samples:
        problems = problems_in_every_seed(method_samples, baseline_samples)
    if problems:
        assert method_samples and baseline_samples
        method_values = [float(np.mean([r[p] for p in problems])) for r in method_samples]
        baseline_values = [float(np.mean([r[p] for p in problems])) for r in baseline_samples]
        a, b = pool_seeds(method_samples), pool_seeds(baseline_samples)
        pooled_differences = [a[p] - b[p] for p in problems]
        better, worse, p_sign = sign_test(pooled_differences)
        problems_mde = paired_mde(pooled_differences)
        unpaired = len(set(a) | set(b)) - len(problems)
    a_values, b_values = np.asarray(method_values, dtype=np.float64), np.asarray(baseline_values, dtype=np.float64)
    diff = float(a_values.mean() - b_values.mean())
    if paired:
        df = a_values.size - 1
        standard_error = float((a_values - b_values).std(ddof=1)) / math.sqrt(a_values.size)
        mde = (t_quantile(1 - ALPHA / 2, df) + t_quantile(POWER, df)) * standard_error
    else:
        df = a_values.size + b_values.size - 2
        standard_error = math.sqrt(a_values.var(ddof=1) / a_values.size + b_values.var(ddof=1) / b_values.size)
        mde = seed_mde(a_values.tolist(), b_values.tolist())
    if not math.isnan(problems_mde):  # never finer than the problems resolve (seeds that agree exactly give 0)
        mde = max(mde, problems_mde)
    half_width = t_quantile(1 - ALPHA / 2, df) * standard_error
    if standard_error > 0:
        p_value = t_two_sided_p(diff / standard_error, df)
    else:  # every seed of both sides agrees exactly: the difference is exact
        p_value = 1.0 if diff == 0 else 0.0
    return Comparison(
        diff=diff,
        ci_low=diff - half_width,
        ci_high=diff + half_width,
        p_sign=p_sign,
        p_value=p_value,
        n_problems=len(problems),
        n_better=better,
        n_worse=worse,
        n_unpaired=unpaired,
        test="seeds-paired" if paired else "seeds",
        mde=mde,
    )


def _seed_pairing(
    method_seeds: Sequence[str | None] | None, baseline_seeds: Sequence[str | None] | None
) -> list[int] | None:
    """``order`` with ``baseline_seeds[order[i]] == method_seeds[i]`` when both sides ran the same distinct, known
    seeds; else None (unpaired)."""
    if not method_seeds or not baseline_seeds or None in method_seeds or None in baseline_seeds:
        return None
    if len(set(method_seeds)) != len(method_seeds) or set(method_seeds) != set(baseline_seeds):
        return None
    if len(baseline_seeds) != len(method_seeds):
        return None
    position = {label: i for i, label in enumerate(baseline_seeds)}
    return [position[label] for label in method_seeds]
