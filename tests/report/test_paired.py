"""Paired tests, attainable p, Holm, the τ test's power, the binomial floor, τ-b bounds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from flatness.report.bootstrap import clip_interval, pooled_tau
from flatness.report.correlation import rank_correlation, within_kendall
from flatness.report.paired import (
    binomial_floor,
    holm,
    mann_whitney_min_p,
    paired_min_p,
    paired_test,
    tau_bounds,
    within_tau_power,
)
from flatness.report.stats import rank_test


def _brute_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided signed-rank p by listing every sign flip (reference implementation)."""
    d = d[d != 0]
    ranks = scipy.stats.rankdata(np.abs(d))
    observed = abs(np.sum(np.sign(d) * ranks))
    flips = [abs(np.dot(s, ranks)) for s in itertools.product((-1, 1), repeat=d.size)]
    return float(np.mean(np.array(flips) >= observed - 1e-9))


def test_paired_test_matches_scipy_exact_without_ties() -> None:
    a = {k: float(k) for k in range(7)}
    b = {0: 0.3, 1: 2.9, 2: 1.2, 3: 7.5, 4: 2.4, 5: 11.0, 6: 6.6}
    t = paired_test(a, b)
    d = np.array([b[k] - a[k] for k in range(7)])
    assert t.method == "exact"
    assert t.wilcoxon_p == pytest.approx(scipy.stats.wilcoxon(d, method="exact").pvalue)
    assert t.wilcoxon_p == pytest.approx(_brute_signed_rank_p(d))
    assert (t.n, t.wins, t.losses, t.ties) == (7, 5, 2, 0)
    assert t.sign_p == pytest.approx(scipy.stats.binomtest(5, 7).pvalue)
    assert t.min_p == pytest.approx(2 / 2**7)


def test_paired_test_with_ties_and_zeros_enumerates_sign_flips() -> None:
    a = {k: 0.0 for k in range(8)}
    b = dict(enumerate([1.0, 1.0, -2.0, 3.0, 3.0, 0.0, 4.0, 5.0]))
    t = paired_test(a, b)
    d = np.array(list(b.values()))
    assert t.method == "sign-flip"
    assert t.ties == 1 and t.wins == 6 and t.losses == 1
    assert t.wilcoxon_p == pytest.approx(_brute_signed_rank_p(d))
    assert t.sign_p == pytest.approx(scipy.stats.binomtest(6, 7).pvalue)


def test_paired_test_more_than_sixteen_tied_pairs_is_still_exact() -> None:
    rng = np.random.default_rng(3)
    d = rng.integers(-3, 6, size=18).astype(float)
    d[d == 0] = 1.0
    t = paired_test(dict.fromkeys(range(18), 0.0), dict(enumerate(d)))
    assert t.method == "sign-flip"
    ranks = scipy.stats.rankdata(np.abs(d))
    obs = abs(np.sum(np.sign(d) * ranks))
    signs = 1 - 2 * ((np.arange(2**18)[:, None] >> np.arange(18)) & 1)
    assert t.wilcoxon_p == pytest.approx(np.mean(np.abs(signs @ ranks) >= obs - 1e-9))


def test_paired_test_five_seeds_cannot_reach_five_percent() -> None:
    t = paired_test(dict.fromkeys(range(5), 0.0), {k: 1.0 + k for k in range(5)})
    assert t.wins == 5
    assert t.wilcoxon_p == pytest.approx(0.0625) and t.sign_p == pytest.approx(0.0625)
    assert t.min_p == pytest.approx(0.0625)
    assert "attainable with 5 pairs" in t.text()


def test_paired_test_uses_only_seeds_in_both_with_finite_values() -> None:
    t = paired_test({0: 1.0, 1: 2.0, 2: math.nan, 9: 1.0}, {0: 2.0, 1: 3.0, 2: 5.0, 3: 1.0})
    assert t.n == 2 and t.wins == 2
    empty = paired_test({0: 1.0}, {1: 2.0})
    assert empty.n == 0 and math.isnan(empty.wilcoxon_p)
    assert empty.note == "no seed was trained in both"
    tied = paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert math.isnan(tied.sign_p) and tied.note == "every pair is tied"


def test_min_p_hand_values() -> None:
    assert mann_whitney_min_p(5, 5) == pytest.approx(2 / 252)
    assert round(mann_whitney_min_p(5, 5), 4) == 0.0079
    assert mann_whitney_min_p(3, 3) == pytest.approx(0.1)
    assert mann_whitney_min_p(5, 5, alternative="greater") == pytest.approx(1 / 252)
    assert mann_whitney_min_p(1, 1) == 1.0
    assert math.isnan(mann_whitney_min_p(0, 3))
    assert paired_min_p(3) == 0.25 and paired_min_p(1) == 1.0
    # the exact Mann–Whitney test reaches it with complete separation
    assert rank_test([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]).p_value == pytest.approx(2 / 252)
    assert rank_test([6, 7, 8], [1, 2, 3]).min_p == pytest.approx(0.1)


def test_holm_textbook_example() -> None:
    # Holm (1979)-style example: sorted p 0.01, 0.02, 0.03, 0.04, 0.05 with m = 5
    adjusted = holm([0.04, 0.01, 0.05, 0.03, 0.02])
    # sorted: 5*0.01, 4*0.02, 3*0.03, max(2*0.04, 0.09), max(0.05, 0.09)
    np.testing.assert_allclose(adjusted, [0.09, 0.05, 0.09, 0.09, 0.08])
    # monotone step-down: a later larger scaled value is not undercut
    np.testing.assert_allclose(holm([0.001, 0.2, 0.011]), [0.003, 0.2, 0.022])
    out = holm([0.5, math.nan, 0.9])
    assert math.isnan(out[1]) and out[0] == pytest.approx(1.0) and out[2] == pytest.approx(1.0)
    assert holm([]).shape == (0,)


def test_binomial_floor_points() -> None:
    assert binomial_floor(0.5, 100) == pytest.approx(5.0)
    assert binomial_floor(0.9, 1000) == pytest.approx(100 * math.sqrt(0.09 / 1000))
    assert binomial_floor(1.0, 50) == 0.0
    assert math.isnan(binomial_floor(math.nan, 10))
    with pytest.raises(ValueError, match="fraction"):
        binomial_floor(92.0, 1000)


def test_within_tau_power_is_alpha_under_the_null_and_grows_with_tau() -> None:
    sizes = [5, 5, 5, 5]
    null = within_tau_power(sizes, 0.0, n_sim=2000, seed=1)
    assert abs(null - 0.05) <= 0.03
    p3 = within_tau_power(sizes, 0.3, n_sim=600, seed=2)
    p6 = within_tau_power(sizes, 0.6, n_sim=600, seed=2)
    assert null < p3 < p6
    assert p6 > 0.5
    assert math.isnan(within_tau_power([1, 1], 0.5))
    with pytest.raises(ValueError):
        within_tau_power(sizes, 1.5)


def test_within_tau_power_runs_the_reports_test() -> None:
    """One simulated data set's decision agrees with within_kendall's p on the same data."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    groups = np.repeat(["a", "b", "c"], 4)
    tau = within_kendall(x, y, groups, n_boot=0, n_perm=400).estimate
    parts = [(x[groups == g][None], y[groups == g][None]) for g in "abc"]
    assert float(pooled_tau(parts)[0]) == pytest.approx(tau)


def test_tau_bounds_and_clipped_intervals() -> None:
    low, high = tau_bounds([1, 1, 1, 2, 3], [1, 2, 3, 4, 5])
    assert high < 1.0 and low == pytest.approx(-high)
    # the bound is attained by sorting y along x, and no pairing exceeds it
    xs = np.array([1, 1, 1, 2, 3.0])
    taus = [
        scipy.stats.kendalltau(xs, np.array(p)).statistic
        for p in itertools.permutations([1, 2, 3, 4, 5.0])
    ]
    assert max(taus) == pytest.approx(high) and min(taus) == pytest.approx(low)
    r = rank_correlation([1, 1, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6], n_boot=500, seed=0)
    assert r.high <= tau_bounds([1, 1, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6])[1] + 1e-12
    w = within_kendall(
        [1, 1, 2, 5, 5, 6], [1, 2, 3, 1, 2, 3], ["a", "a", "a", "b", "b", "b"], n_boot=400
    )
    assert w.high <= tau_bounds([1, 1, 2, 5, 5, 6], [1, 2, 3, 1, 2, 3], list("aaabbb"))[1] + 1e-12
    assert clip_interval(-1.0, 1.0, (-0.5, 0.5)) == (-0.5, 0.5)
    assert clip_interval(math.nan, 0.2, (-0.5, 0.5))[1] == 0.2
