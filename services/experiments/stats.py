"""The statistics of the report, from statsmodels and scipy (no formulas of our own).

- a return rate's 95 % interval: Wilson score interval
  (``statsmodels.stats.proportion.proportion_confint``, method ``"wilson"``);
- a difference of two return rates: Newcombe's hybrid score interval
  (``confint_proportions_2indep``, ``compare="diff"``, method ``"newcomb"``; Newcombe 1998,
  Statistics in Medicine 17:873) and the Wald z-test's p-value
  (``test_proportions_2indep``, method ``"wald"``);
- the relative difference: the log-ratio interval of the risk ratio
  (``compare="ratio"``, method ``"log"``), minus one;
- sample-ratio mismatch: Pearson's chi-square goodness of fit of the units per variant
  against the allocation weights (``scipy.stats.chisquare``), flagged below
  :data:`SRM_ALPHA`;
- the minimum detectable effect: the Cohen's h that a two-sided z-test detects with 80 %
  power at the current sample sizes (``NormalIndPower.solve_power``), turned back into a
  return-rate difference against the control's rate by root finding
  (``scipy.optimize.brentq`` on ``proportion_effectsize``).

Every function takes NumPy arrays as well as scalars where it says so, so the simulation
tests run thousands of experiments at once.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ALPHA = 0.05
POWER = 0.8
# A p-value this small on the allocation means the split is broken, not unlucky; 0.001 is
# the usual threshold (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online
# Controlled Experiments", KDD), strict because the check runs on every report.
SRM_ALPHA = 0.001


def rate_ci(events, n, alpha: float = ALPHA):
    """Wilson interval of ``events / n`` (arrays allowed); ``(nan, nan)`` where n == 0."""
    from statsmodels.stats.proportion import proportion_confint

    events, n = np.asarray(events, float), np.asarray(n, float)
    safe = np.where(n > 0, n, 1)
    lo, hi = proportion_confint(events, safe, alpha=alpha, method="wilson")
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def diff_ci(x1, n1, x0, n0, alpha: float = ALPHA):
    """Newcombe interval of ``x1/n1 - x0/n0`` (treatment minus control; arrays allowed)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    return confint_proportions_2indep(x1, n1, x0, n0, compare="diff", method="newcomb", alpha=alpha)


def diff_pvalue(x1, n1, x0, n0):
    """Two-sided p-value of the Wald z-test of equal rates (arrays allowed)."""
    from statsmodels.stats.proportion import test_proportions_2indep

    # A degenerate sample (all or no orders returned in both arms) has no variance: the
    # p-value is nan then, without a division warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        r = test_proportions_2indep(x1, n1, x0, n0, compare="diff", method="wald")
    return np.asarray(r.pvalue)


def ratio_ci(x1, n1, x0, n0, alpha: float = ALPHA):
    """Log interval of the risk ratio ``(x1/n1) / (x0/n0)``."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    return confint_proportions_2indep(x1, n1, x0, n0, compare="ratio", method="log", alpha=alpha)


@dataclasses.dataclass(frozen=True)
class SRM:
    """Sample-ratio check: chi-square statistic, p-value, flagged."""

    chi2: float
    pvalue: float
    flagged: bool
    observed: tuple[int, ...]
    expected: tuple[float, ...]


def srm_check(observed, weights, alpha: float = SRM_ALPHA) -> SRM:
    """Chi-square goodness of fit of units per variant against the allocation weights."""
    from scipy.stats import chisquare

    obs = np.asarray(observed, float)
    w = np.asarray(weights, float)
    total = obs.sum()
    if total == 0:
        return SRM(float("nan"), float("nan"), False, tuple(int(x) for x in obs), (0.0,) * len(w))
    expected = total * w / w.sum()
    res = chisquare(obs, expected)
    p = float(res.pvalue)
    return SRM(
        float(res.statistic), p, p < alpha, tuple(int(x) for x in obs), tuple(map(float, expected))
    )


def mde(p0: float, n0: int, n1: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest absolute drop in the return rate below ``p0`` that a two-sided test at
    ``alpha`` detects with ``power``, with ``n0`` control and ``n1`` treatment orders.

    Returns:
        The difference (positive), or nan when it cannot be computed (no orders, a rate of
        0 or 1, or no detectable drop at all).
    """
    from scipy.optimize import brentq
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if n0 <= 1 or n1 <= 1 or not 0 < p0 < 1:
        return float("nan")
    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=n0, ratio=n1 / n0, alpha=alpha, power=power
    )
    h = float(np.asarray(h).reshape(-1)[0])
    if not math.isfinite(h) or proportion_effectsize(p0, 0.0) < h:
        return float("nan")

    def gap(d: float) -> float:
        return float(proportion_effectsize(p0, p0 - d)) - h

    return float(brentq(gap, 0.0, p0))
