"""Report statistics: the Mann–Whitney test, mean ± std, formatting, paired wins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from flatness.report.stats import (
    MeanStd,
    RankTest,
    format_mean_std,
    format_p_value,
    mean_std,
    paired_wins,
    rank_test,
)

# --------------------------------------------------------------------------- rank test


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("ties", [False, True])
def test_rank_test_matches_scipy(alternative: str, ties: bool) -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=7), rng.normal(0.8, 1.0, size=9)
    if ties:
        a, b = np.round(a), np.round(b)
    t = rank_test(a, b, alternative=alternative)
    # with ties, exact over every split of the pooled values (C(16, 7) = 11440 of them)
    method = scipy.stats.PermutationMethod(n_resamples=np.inf) if ties else "auto"
    ref = scipy.stats.mannwhitneyu(a, b, alternative=alternative, method=method)
    assert t.statistic == ref.statistic
    assert t.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    brute = np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :]))
    assert t.effect == pytest.approx(brute, abs=1e-15)
    assert (t.n_a, t.n_b, t.alternative, t.dropped, t.note) == (7, 9, alternative, 0, "")


def test_rank_test_with_ties_never_goes_below_the_attainable_p() -> None:
    t = rank_test([0.3] * 5, [0.1] * 5)
    assert t.p_value == pytest.approx(t.min_p) == pytest.approx(2 / 252)
    assert scipy.stats.mannwhitneyu([0.3] * 5, [0.1] * 5).pvalue < t.min_p  # the approximation
    one = rank_test([2.0], [1.0, 1.0, 3.0])  # a single run against three, tied
    assert one.p_value >= one.min_p == pytest.approx(0.5)


def test_rank_test_effect_is_one_or_zero_under_complete_separation() -> None:
    high, low = [6.0, 7.0, 8.0, 9.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    up = rank_test(high, low)
    down = rank_test(low, high)
    assert (up.statistic, up.effect) == (25.0, 1.0)
    assert (down.statistic, down.effect) == (0.0, 0.0)
    assert up.p_value == pytest.approx(2 / math.comb(10, 5))
    assert up.text() == "U = 25, p = 0.008 (5 vs 5)"
    assert repr(up) == "RankTest(two-sided U = 25, p = 0.008 (5 vs 5), effect=1.00)"


@pytest.mark.filterwarnings("error")
def test_rank_test_drops_non_finite_values_and_survives_empty_groups() -> None:
    t = rank_test([1.0, np.nan, 3.0], [2.0, np.inf])
    assert (t.n_a, t.n_b, t.dropped, t.statistic) == (2, 1, 2, 1.0)
    empty = rank_test([np.nan], [1.0, 2.0])
    assert math.isnan(empty.statistic) and math.isnan(empty.p_value)
    assert math.isnan(empty.effect)
    assert empty.note == "a has no finite values"
    assert rank_test([], []).note == "a and b have no finite values"
    assert rank_test([1.0], []).text() == "n/a (b has no finite values)"


def test_rank_test_rejects_an_unknown_alternative() -> None:
    with pytest.raises(ValueError, match="alternative"):
        rank_test([1, 2], [3, 4], alternative="bigger")
    assert isinstance(rank_test([1], [2]), RankTest)


# --------------------------------------------------------------------------- mean ± std


def test_mean_std_matches_numpy_and_drops_non_finite() -> None:
    values = [0.91, 0.92, np.nan, 0.905, np.inf]
    m = mean_std(values)
    finite = np.array([0.91, 0.92, 0.905])
    assert m.mean == pytest.approx(finite.mean())
    assert m.std == pytest.approx(finite.std(ddof=1))
    assert (m.n, m.dropped) == (3, 2)
    assert m.text() == "0.912 ± 0.008"
    one = mean_std([0.5])
    assert (one.n, math.isnan(one.std), one.text()) == (1, True, "0.500")
    none = mean_std([np.nan])
    assert (none.n, none.dropped, none.text()) == (0, 1, "—")
    assert isinstance(none, MeanStd) and repr(none) == "MeanStd(—, n=0, dropped=1)"


@pytest.mark.parametrize(
    ("mean", "std", "n", "expected"),
    [
        (0.91234, 0.0041, 5, "0.912 ± 0.004"),
        (0.91234, 0.0041, 1, "0.912"),
        (0.91234, math.nan, 1, "0.912"),
        (math.nan, math.nan, 0, "—"),
        (0.0, 0.0, 0, "—"),
        (12.345, 0.678, 3, "12.3 ± 0.7"),
        (1234.5, 56.7, 4, "1234 ± 57"),
        (-0.5, 0.25, 2, "-0.500 ± 0.250"),
        (9.996, 0.01, 2, "10.0 ± 0.0"),
        (0.00123, 0.0001, 2, "0.00123 ± 0.00010"),
        (9.1234e-5, 4.2e-7, 3, "(9.12 ± 0.04)e-05"),
        (9.1234e-5, 0.0, 1, "9.12e-05"),
        (-3.2e-6, 1e-6, 5, "(-3.20 ± 1.00)e-06"),
        (123456.0, 789.0, 3, "(1.23 ± 0.01)e+05"),
        (0.0, 0.05, 3, "0.0000 ± 0.0500"),
        (0.0, 0.0, 3, "0 ± 0"),
    ],
)
def test_format_mean_std(mean: float, std: float, n: int, expected: str) -> None:
    assert format_mean_std(mean, std, n) == expected


def test_format_mean_std_digits_and_p_values() -> None:
    assert format_mean_std(0.91234, 0.0041, 5, digits=2) == "0.91 ± 0.00"
    assert format_mean_std(0.91234, 0.0041, 5, digits=4) == "0.9123 ± 0.0041"
    with pytest.raises(ValueError, match="digits"):
        format_mean_std(1.0, 0.1, 2, digits=0)
    assert [format_p_value(p) for p in (0.5, 0.012, 0.0049, 3e-7)] == [
        "0.50",
        "0.01",
        "0.005",
        "3.0e-07",
    ]


# --------------------------------------------------------------------------- paired wins


def test_paired_wins_counts_keys_present_and_finite_in_both() -> None:
    sb = {"s0": 1.0, "s1": 2.0, "s2": 3.0, "s3": math.nan, "s4": 1.0, "only_sb": 0.0}
    lb = {"s0": 5.0, "s1": 1.0, "s2": 4.0, "s3": 9.0, "s4": 1.0, "only_lb": 9.0}
    assert paired_wins(sb, lb) == (2, 4)  # s4 is a tie, not a win
    assert paired_wins(lb, sb) == (1, 4)
    assert paired_wins({}, lb) == (0, 0)
    assert paired_wins({1: np.float64(1.0)}, {1: np.float64(2.0)}) == (1, 1)
