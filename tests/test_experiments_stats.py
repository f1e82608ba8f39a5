"""Statistical validation of the experiment report by simulation (seeded, vectorised).

The report's functions take arrays, so thousands of simulated experiments run in one call.
"""

from __future__ import annotations

import numpy as np

from services.experiments import stats

N_PER_ARM = 10_000  # 20,000 orders in all


def test_interval_of_the_difference_covers_a_known_effect_95_percent_of_the_time():
    # Control returns 22 %, treatment 19 %: the true difference is -3 points.
    rng = np.random.default_rng(20261128)
    sims = 400
    x0 = rng.binomial(N_PER_ARM, 0.22, sims)
    x1 = rng.binomial(N_PER_ARM, 0.19, sims)
    lo, hi = stats.diff_ci(x1, N_PER_ARM, x0, N_PER_ARM)
    coverage = np.mean((lo <= -0.03) & (hi >= -0.03))
    assert 0.93 <= coverage <= 0.97, coverage
    # And the effect is found: at this size the test has high power for 3 points.
    assert np.mean(stats.diff_pvalue(x1, N_PER_ARM, x0, N_PER_ARM) < 0.05) > 0.9


def test_relative_interval_covers_the_true_ratio():
    rng = np.random.default_rng(7)
    sims = 400
    x0 = rng.binomial(N_PER_ARM, 0.22, sims)
    x1 = rng.binomial(N_PER_ARM, 0.19, sims)
    lo, hi = stats.ratio_ci(x1, N_PER_ARM, x0, N_PER_ARM)
    coverage = np.mean((lo <= 0.19 / 0.22) & (hi >= 0.19 / 0.22))
    assert 0.93 <= coverage <= 0.97, coverage


def test_false_positive_rate_without_an_effect_is_five_percent():
    # 4,000 A/A experiments (standard error of the rate ~0.35 points).
    rng = np.random.default_rng(11)
    sims = 4000
    x0 = rng.binomial(N_PER_ARM, 0.2, sims)
    x1 = rng.binomial(N_PER_ARM, 0.2, sims)
    p = stats.diff_pvalue(x1, N_PER_ARM, x0, N_PER_ARM)
    fpr = np.mean(p < 0.05)
    assert 0.04 <= fpr <= 0.06, fpr
    # The interval agrees with the test: it excludes 0 about as often.
    lo, hi = stats.diff_ci(x1, N_PER_ARM, x0, N_PER_ARM)
    assert 0.04 <= np.mean((lo > 0) | (hi < 0)) <= 0.06


def test_srm_flags_a_broken_allocation_and_passes_a_sound_one():
    rng = np.random.default_rng(3)
    units = 20_000
    # Sound 50/50 split: flagged (p < 0.001) in about 0.1 % of experiments.
    sound = [
        stats.srm_check(rng.multinomial(units, [0.5, 0.5]), (1, 1)).flagged for _ in range(300)
    ]
    assert sum(sound) <= 2
    # Broken: a bug loses 10 % of the treatment's units (a 52.6/47.4 split).
    share = np.array([1.0, 0.9]) / 1.9
    broken = [stats.srm_check(rng.multinomial(units, share), (1, 1)).flagged for _ in range(300)]
    assert np.mean(broken) > 0.99
    # Unequal weights are honoured: a correct 70/30 split is not flagged.
    s = stats.srm_check([7012, 2988], (7, 3))
    assert not s.flagged and abs(s.expected[0] - 7000) < 1e-9


def test_wilson_interval_of_a_rate_covers_the_truth():
    rng = np.random.default_rng(5)
    n = 2000
    x = rng.binomial(n, 0.2, 2000)
    lo, hi = stats.rate_ci(x, np.full(2000, n))
    assert 0.93 <= np.mean((lo <= 0.2) & (hi >= 0.2)) <= 0.97
    lo, hi = stats.rate_ci(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_mde_is_the_effect_detected_with_80_percent_power():
    rng = np.random.default_rng(9)
    d = stats.mde(0.22, N_PER_ARM, N_PER_ARM)
    assert 0.01 < d < 0.03  # about 1.6 points at 10,000 orders per arm
    # Simulated: an effect of exactly the MDE is detected in ~80 % of experiments.
    sims = 2000
    x0 = rng.binomial(N_PER_ARM, 0.22, sims)
    x1 = rng.binomial(N_PER_ARM, 0.22 - d, sims)
    power = np.mean(stats.diff_pvalue(x1, N_PER_ARM, x0, N_PER_ARM) < 0.05)
    assert 0.76 <= power <= 0.84, power
    # Four times the sample, half the MDE.
    assert abs(stats.mde(0.22, 4 * N_PER_ARM, 4 * N_PER_ARM) / d - 0.5) < 0.03
    assert np.isnan(stats.mde(0.0, 100, 100)) and np.isnan(stats.mde(0.2, 1, 1))
