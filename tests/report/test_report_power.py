"""The report's tests on synthetic numbers: their false-positive rate when nothing differs (with and without
seed-to-seed variation), and whether an effect of the reported minimal detectable size is found about 80 % of the
time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hipo.report.power import paired_mde, seed_mde, t_quantile, t_two_sided_p
from hipo.report.stats import Comparison, compare, pool_seeds
from hipo.report.tables import verdict


@pytest.mark.parametrize(
    ("p", "df", "exact"),
    [
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.8, 2, 1.0607),
        (0.975, 3, 3.1824),
        (0.975, 4, 2.7764),
        (0.8, 4, 0.9410),
        (0.975, 10, 2.2281),
        (0.8, 30, 0.8538),
    ],
)
def test_t_quantiles_match_the_table(p: float, df: int, exact: float) -> None:
    assert t_quantile(p, df) == pytest.approx(exact, rel=1.5e-3)


def _seeds(rng: np.random.Generator, probabilities: np.ndarray, shifts: np.ndarray) -> list[dict[str, float]]:
    """Per seed ``{problem: 0/1}``: one greedy answer per problem, correct with the problem's probability shifted by
    the seed's shift (a seed's LoRA init and data order move every problem at once)."""
    out = []
    for shift in shifts:
        shifted = np.clip(probabilities + shift, 0, 1)
        out.append({f"p{i}": float(rng.random() < q) for i, q in enumerate(shifted)})
    return out


def _comparisons(
    effect: float, trials: int, problems: int = 200, seed: int = 0, seed_shift: float = 0.0, paired: bool = False
) -> list[tuple[Comparison, Comparison]]:
    """(the report's comparison, a paired bootstrap over the problems with the seeds pooled) per trial.

    ``paired``: both sides ran seeds 0, 1, 2 and share each seed's shift (common init and data order); else the
    baseline ran seeds 3, 4, 5 with shifts of their own.
    """
    rng = np.random.default_rng(seed)
    out = []
    for trial in range(trials):
        difficulty = rng.uniform(0.1, 0.9, size=problems)
        shifts = rng.normal(0.0, seed_shift, size=3)
        method = _seeds(rng, np.clip(difficulty + effect, 0, 1), shifts)
        baseline = _seeds(rng, difficulty, shifts if paired else rng.normal(0.0, seed_shift, size=3))
        labels = ["0", "1", "2"] if paired else ["3", "4", "5"]
        report = compare(
            [0.0] * 3, [0.0] * 3, method, baseline, 1000, trial, method_seeds=["0", "1", "2"], baseline_seeds=labels
        )
        pooled = compare([0.0], [0.0], [pool_seeds(method)], [pool_seeds(baseline)], n_resamples=1000, seed=trial)
        out.append((report, pooled))
    return out


@pytest.mark.slow  # 3 x 600 synthetic negative controls, each with a 1000-resample bootstrap (~20 s)
@pytest.mark.parametrize(("seed_shift", "paired"), [(0.0, False), (0.04, False), (0.04, True)])
def test_identical_configs_are_called_different_at_about_the_nominal_rate(seed_shift: float, paired: bool) -> None:
    """Negative controls: the same per-problem success probabilities on both sides, 3 seeds each, every seed
    shifting all its problems by N(0, seed_shift²). The report's t-test over seeds may flag ~5 % at level 0.05
    whatever the seed variation; more than 8 % (3 binomial SDs above 5 % over 600) would be a broken test. A test
    over problems with the seeds pooled is fine without seed variation and calls seed noise a difference with it.
    (Measured over 1000 per setting: t-test 4.9 % / 4.3 % / 5.1 % at seed_shift 0 / 0.03 / 0.06; pooled paired
    bootstrap 3.7 % / 16 % / 34 %. These 600 at 0.04: t-test 7.5 % unpaired, 5.7 % paired by seed; pooled 23.5 %.)"""
    pairs = _comparisons(effect=0.0, trials=600, seed=7, seed_shift=seed_shift, paired=paired)
    report_rate = np.mean([report.significant for report, _ in pairs])
    pooled_rate = np.mean([pooled.p_value < 0.05 for _, pooled in pairs])
    assert 0.01 <= report_rate <= 0.08  # not a test that never fires either
    expected_test = "seeds-paired" if paired else "seeds"
    assert all(r.test == expected_test and verdict(r).startswith(("no |Δ| >", "different")) for r, _ in pairs)
    if seed_shift == 0.0:
        assert pooled_rate <= 0.08
    elif not paired:
        assert pooled_rate >= 0.15  # why the report tests over seeds


def test_an_effect_of_the_reported_size_is_found_about_80_percent_of_the_time() -> None:
    nulls = [report for report, _ in _comparisons(effect=0.0, trials=40, seed=1)]
    mde = float(np.median([c.mde for c in nulls]))
    assert 0.05 < mde < 0.15  # 200 problems, 3 seeds a side (measured 0.088)
    found = np.mean([report.significant for report, _ in _comparisons(effect=mde, trials=150, seed=2)])
    assert 0.65 <= found <= 0.93


def test_t_test_p_values_match_the_table() -> None:
    """Two-sided 5 % critical values give p = 0.05; t = 0 gives 1; SciPy's t for df 7 at t = 1 and df 6 at 2.5."""
    for t, df in [(12.7062, 1), (4.3027, 2), (3.1824, 3), (2.7764, 4), (2.2281, 10)]:
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-5)
        assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)
    assert t_two_sided_p(0.0, 5) == 1.0
    assert t_two_sided_p(1.0, 7) == pytest.approx(0.350616663, rel=1e-8)
    assert t_two_sided_p(2.5, 6) == pytest.approx(0.046528232, rel=1e-8)
    with pytest.raises(ValueError, match="positive integer"):
        t_two_sided_p(1.0, 2.5)  # type: ignore[arg-type]


def test_mde_shrinks_with_the_square_root_of_the_problems() -> None:
    rng = np.random.default_rng(0)
    small = rng.choice([-1.0, 0.0, 1.0], size=100, p=[0.2, 0.6, 0.2])
    large = np.tile(small, 4)
    assert paired_mde(large) == pytest.approx(paired_mde(small) / 2, rel=0.01)
    assert paired_mde([0.0] * 50) > 0  # no discordant problem: the resolution of 50 problems, not 0
    assert math.isnan(paired_mde([1.0]))


def test_seed_mde_uses_t_quantiles_and_needs_two_seeds() -> None:
    mde = seed_mde([0.70, 0.72, 0.74], [0.70, 0.71, 0.75])
    standard_error = math.sqrt(np.var([0.70, 0.72, 0.74], ddof=1) / 3 + np.var([0.70, 0.71, 0.75], ddof=1) / 3)
    assert mde == pytest.approx((2.7764 + 0.9410) * standard_error, rel=3e-3)
    assert math.isnan(seed_mde([0.7], [0.7, 0.8]))
    tested = compare([0.70, 0.72, 0.74], [0.70, 0.71, 0.75])
    assert tested.mde == pytest.approx(mde) and not tested.significant
    assert verdict(tested) == f"no |Δ| > {mde:.3f}"
    assert verdict(compare([0.70], [0.70, 0.71, 0.75])) == "untested"
