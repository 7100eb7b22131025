"""Power analysis: the smallest effect a comparison could have detected, so "no difference" reads "none larger than X".

Minimal detectable effect (two-sided level alpha = 0.05, power 1 - beta = 0.8):

- **Paired over problems** (m paired problems, per-problem differences d with sample SD s_d, ddof = 1):
  ``MDE = (z_{1-alpha/2} + z_{1-beta}) * s_d / sqrt(m)`` = 2.80 s_d / sqrt(m). With no discordant problem (s_d = 0)
  the data cannot estimate s_d; the SD of one discordant problem of size 1 among m stands in (the finest effect the
  problems resolve), so the MDE is never reported as 0.
- **Seed means** (n_a and n_b seeds, sample SDs s_a and s_b):
  ``MDE = (t_{1-alpha/2, nu} + t_{1-beta, nu}) * sqrt(s_a^2 / n_a + s_b^2 / n_b)``, nu = n_a + n_b - 2; undefined
  (nan) with fewer than 2 seeds on a side.

Student-t quantiles are exact for nu = 1 and 2 (closed forms) and use the Cornish-Fisher expansion in 1/nu beyond
(four terms; within 0.15 % of the exact quantile for nu >= 3 at the levels used here), so the report needs no SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8


def z_quantile(p: float) -> float:
    """The standard normal quantile."""
    return NormalDist().inv_cdf(p)


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile with ``df`` degrees of freedom (exact for 1 and 2, else Cornish-Fisher)."""
    if df <= 0:
        raise ValueError(f"t_quantile: df must be positive, got {df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = z_quantile(p)
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / df ** (power + 1) for power, term in enumerate(terms))


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of Student's t with integer ``df``, exact (Abramowitz & Stegun 26.7.3-4).

    With theta = atan(|t| / sqrt(df)) and c = cos(theta), ``P(|T| < |t|)`` is
    ``(2 / pi) * (theta + sin(theta) * (c + 2/3 c^3 + ... + (2*4...(df-3)) / (1*3...(df-2)) c^(df-2)))`` for odd df
    (just ``2 theta / pi`` for df = 1) and ``sin(theta) * (1 + 1/2 c^2 + ... + (1*3...(df-3)) / (2*4...(df-2))
    c^(df-2))`` for even df.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"t_two_sided_p: df must be a positive integer, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c, sine = math.cos(theta), math.sin(theta)
    if df % 2 == 1:
        term, series = c, 0.0
        for k in range(1, (df - 1) // 2 + 1):  # terms c^1, c^3, ..., c^(df-2)
            series += term
            term *= c * c * (2 * k) / (2 * k + 1)
        inside = (2 / math.pi) * (theta + sine * series)
    else:
        term, series = 1.0, 0.0
        for k in range(1, df // 2 + 1):  # terms c^0, c^2, ..., c^(df-2)
            series += term
            term *= c * c * (2 * k - 1) / (2 * k)
        inside = sine * series
    return min(1.0, max(0.0, 1.0 - inside))


def paired_mde(differences: Sequence[float], alpha: float = ALPHA, power: float = POWER) -> float:
    """MDE of a paired mean over m problems (see the module docstring); nan for m < 2."""
    diffs = np.asarray(list(differences), dtype=np.float64)
    m = diffs.size
    if m < 2:
        return math.nan
    spread = float(diffs.std(ddof=1))
    if spread == 0.0:
        spread = float(np.std(np.r_[1.0, np.zeros(m - 1)], ddof=1))
    return (z_quantile(1 - alpha / 2) + z_quantile(power)) * spread / math.sqrt(m)


def seed_mde(
    method_values: Sequence[float], baseline_values: Sequence[float], alpha: float = ALPHA, power: float = POWER
) -> float:
    """MDE of a difference of seed means (see the module docstring); nan with fewer than 2 seeds on a side.

    Seeds that agree exactly on both sides (zero spread) give 0: the seeds then resolve any difference.
    """
    a = np.asarray(list(method_values), dtype=np.float64)
    b = np.asarray(list(baseline_values), dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return math.nan
    df = a.size + b.size - 2
    standard_error = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * standard_error
