"""Rank correlations: scipy agreement, the vectorized bootstrap, coverage, degenerate data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import scipy.stats

from flatness.report.bootstrap import resample_statistics
from flatness.report.correlation import Correlation, rank_correlation, within_kendall

METHODS = ("kendall", "spearman")


def scipy_statistic(method: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    res = scipy.stats.kendalltau(x, y) if method == "kendall" else scipy.stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def tied_data(n: int = 25, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Correlated pairs on a coarse grid, so both variables have many ties."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=n).astype(float)
    y = np.round(0.5 * x + rng.normal(size=n))
    return x, y


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ties", [False, True])
def test_estimate_and_p_value_match_scipy(method: str, ties: bool) -> None:
    if ties:
        x, y = tied_data()
    else:
        rng = np.random.default_rng(0)
        x = rng.normal(size=20)
        y = -x + rng.normal(size=20)
    r = rank_correlation(x, y, method=method, n_boot=50)
    est, p = scipy_statistic(method, x, y)
    assert r.estimate == pytest.approx(est, abs=1e-14)
    assert r.p_value == pytest.approx(p, rel=1e-12)
    assert (r.method, r.n, r.dropped, r.note) == (method, x.size, 0, "")


@pytest.mark.parametrize("method", METHODS)
def test_vectorized_resample_statistic_equals_scipy_on_each_resample(method: str) -> None:
    x, y = tied_data(n=15, seed=7)
    rng = np.random.default_rng(11)
    indices = rng.integers(0, x.size, size=(12, x.size))
    indices[0] = np.arange(x.size)  # the original sample
    indices[1] = 4  # every draw the same point: degenerate
    indices[2, :3] = [0, 0, 1]  # repeated draws, as the bootstrap makes
    got = resample_statistics(x, y, indices, method)
    assert math.isnan(got[1])
    for row in (0, *range(2, indices.shape[0])):
        xs, ys = x[indices[row]], y[indices[row]]
        if np.all(xs == xs[0]) or np.all(ys == ys[0]):
            assert math.isnan(got[row])
        else:
            assert got[row] == pytest.approx(scipy_statistic(method, xs, ys)[0], abs=1e-12)
    assert np.isfinite(got[[0, *range(2, 12)]]).sum() >= 8  # most rows were really checked


def test_resample_statistic_handles_a_degenerate_y_only() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([5.0, 5.0, 6.0, 6.0])
    indices = np.array([[0, 1, 0, 1], [0, 2, 1, 3]])
    for method in METHODS:
        got = resample_statistics(x, y, indices, method)
        assert math.isnan(got[0])
        assert got[1] == pytest.approx(scipy_statistic(method, x[indices[1]], y[indices[1]])[0])


@pytest.mark.parametrize("method", METHODS)
def test_interval_is_the_percentile_interval_of_the_seeded_resamples(method: str) -> None:
    x, y = tied_data(n=12, seed=5)
    r = rank_correlation(x, y, method=method, n_boot=300, confidence=0.9, seed=42)
    indices = np.random.default_rng(42).integers(0, x.size, size=(300, x.size))
    stats = np.array(
        [
            scipy_statistic(method, x[i], y[i])[0]
            if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0
            else np.nan
            for i in indices
        ]
    )
    valid = stats[np.isfinite(stats)]
    assert r.degenerate == stats.size - valid.size
    assert r.low == pytest.approx(np.quantile(valid, 0.05), abs=1e-12)
    assert r.high == pytest.approx(np.quantile(valid, 0.95), abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_interval_other_seed_other_interval(method: str) -> None:
    x, y = tied_data(n=20, seed=1)
    a = rank_correlation(x, y, method=method, n_boot=200, seed=5)
    b = rank_correlation(x, y, method=method, n_boot=200, seed=5)
    c = rank_correlation(x, y, method=method, n_boot=200, seed=6)
    assert (a.low, a.high) == (b.low, b.high)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == c.estimate


@pytest.mark.parametrize("method", METHODS)
def test_interval_contains_the_estimate(method: str) -> None:
    rng = np.random.default_rng(2)
    for _ in range(10):
        x = rng.normal(size=15)
        y = 0.7 * x + rng.normal(size=15)
        r = rank_correlation(x, y, method=method, n_boot=400, seed=int(rng.integers(1000)))
        assert r.low <= r.estimate <= r.high
        assert -1.0 <= r.low <= r.high <= 1.0


def test_large_sample_is_chunked_and_matches_scipy() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=500)
    y = x + rng.normal(size=500)
    r = rank_correlation(x, y, n_boot=100, seed=1)
    assert r.estimate == pytest.approx(scipy_statistic("kendall", x, y)[0], abs=1e-14)
    assert r.low < r.estimate < r.high
    assert r.high - r.low < 0.2


def test_bootstrap_interval_covers_the_population_tau() -> None:
    """Greiner's relation: for a bivariate normal, tau = (2/pi) arcsin(rho)."""
    rho, n, datasets = 0.5, 30, 200
    true_tau = 2 / math.pi * math.asin(rho)
    rng = np.random.default_rng(2024)
    cov = [[1.0, rho], [rho, 1.0]]
    start = time.perf_counter()
    covered = 0
    for i in range(datasets):
        xy = rng.multivariate_normal([0.0, 0.0], cov, size=n)
        r = rank_correlation(xy[:, 0], xy[:, 1], n_boot=500, seed=i)
        covered += r.low <= true_tau <= r.high
    seconds = time.perf_counter() - start
    coverage = covered / datasets
    print(f"coverage of 95% percentile CI for tau={true_tau:.3f}: {coverage:.3f} ({seconds:.2f} s)")
    assert 0.90 <= coverage <= 0.99


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("x", "y", "note", "n", "dropped"),
    [
        ([], [], "fewer than 3 finite pairs", 0, 0),
        ([1.0, 2.0], [2.0, 1.0], "fewer than 3 finite pairs", 2, 0),
        ([1.0, 2.0, math.nan, 4.0], [1.0, 2.0, 3.0, math.inf], "fewer than 3 finite pairs", 2, 2),
        ([2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0], "x is constant", 4, 0),
        ([1.0, 2.0, 3.0, -math.inf], [7.0, 7.0, 7.0, 1.0], "y is constant", 3, 1),
        ([1.0, 1.0, 1.0], [3.0, 3.0, 3.0], "x and y are constant", 3, 0),
    ],
)
def test_degenerate_inputs_give_nan_with_a_note(
    method: str, x: list[float], y: list[float], note: str, n: int, dropped: int
) -> None:
    r = rank_correlation(x, y, method=method, n_boot=100)
    assert all(math.isnan(v) for v in (r.estimate, r.low, r.high, r.p_value))
    assert (r.note, r.n, r.dropped) == (note, n, dropped)
    assert r.text() == f"n/a ({note})"
    assert note in repr(r)


def test_non_finite_pairs_are_dropped_and_counted() -> None:
    x, y = tied_data(n=20, seed=4)
    xd = np.concatenate([x, [np.nan, 1.0, np.inf]])
    yd = np.concatenate([y, [1.0, -np.inf, np.nan]])
    r = rank_correlation(xd, yd, n_boot=100, seed=3)
    clean = rank_correlation(x, y, n_boot=100, seed=3)
    assert (r.n, r.dropped) == (20, 3)
    assert (r.estimate, r.low, r.high, r.p_value) == (
        clean.estimate,
        clean.low,
        clean.high,
        clean.p_value,
    )


def test_zero_resamples_give_an_estimate_without_interval() -> None:
    r = rank_correlation([1, 2, 3, 4], [1, 3, 2, 4], n_boot=0)
    assert r.estimate == pytest.approx(scipy.stats.kendalltau([1, 2, 3, 4], [1, 3, 2, 4])[0])
    assert math.isnan(r.low) and math.isnan(r.high)
    assert r.text() == "0.67 (no interval: n_boot=0)"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"method": "pearson"}, "method"),
        ({"n_boot": -1}, "n_boot"),
        ({"n_boot": 2.5}, "n_boot"),
        ({"confidence": 95}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(
    kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        rank_correlation([1, 2, 3], [3, 2, 1], **kwargs)  # type: ignore[arg-type]


def test_bad_shapes_raise_value_error() -> None:
    with pytest.raises(ValueError, match="same length"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="one-dimensional"):
        rank_correlation([[1, 2], [3, 4]], [[1, 2], [3, 4]])


def test_correlation_prints_and_converts() -> None:
    r = Correlation(
        method="kendall",
        estimate=-0.6213,
        low=-0.8012,
        high=-0.4088,
        p_value=0.0031,
        n=15,
        dropped=0,
        n_boot=2000,
        degenerate=0,
        confidence=0.95,
        seed=0,
    )
    assert repr(r) == "Correlation(kendall tau=-0.62 [-0.80, -0.41], p=0.003, n=15)"
    assert r.text() == "-0.62 [-0.80, -0.41]"
    assert r.text(name="τ") == "τ = -0.62 [-0.80, -0.41]"
    d = r.to_dict()
    assert d["estimate"] == -0.6213 and d["note"] == "" and d["seed"] == 0
    spearman = rank_correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], method="spearman")
    assert repr(spearman).startswith("Correlation(spearman rho=")


# ------------------------------------------------------------------ within-group Kendall tau


def _brute_within(x, y, groups) -> float:
    num = tx = ty = 0.0
    for g in set(groups):
        idx = [i for i, h in enumerate(groups) if h == g]
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
                num += sx * sy
                tx += abs(sx)
                ty += abs(sy)
    return num / np.sqrt(tx * ty)


def test_within_kendall_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=17).astype(float)
    y = rng.integers(0, 3, size=17).astype(float)
    groups = list(rng.integers(0, 4, size=17))
    r = within_kendall(x, y, groups, n_boot=50, n_perm=50)
    assert r.estimate == pytest.approx(_brute_within(x, y, groups), abs=1e-12)
    assert r.method == "kendall-within"


def test_within_kendall_of_one_group_is_tau_b() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.integers(0, 4, size=12).astype(float)
    r = within_kendall(x, y, ["a"] * 12, n_boot=0, n_perm=0)
    assert r.estimate == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)


def test_within_kendall_removes_a_confounding_group_effect() -> None:
    # Both x and y are driven by the group (batch size); within groups they are unrelated
    # noise, so the pooled tau is strong and the within-group tau is not.
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1, 2, 3], 8)
    x = groups * 10 + rng.normal(size=32)
    y = -groups * 10 + rng.normal(size=32)
    assert rank_correlation(x, y, n_boot=0).estimate < -0.7
    r = within_kendall(x, y, groups, n_boot=500, n_perm=500, seed=0)
    assert abs(r.estimate) < 0.3 and r.p_value > 0.05
    assert r.low < 0 < r.high


def test_within_kendall_detects_a_within_group_relation() -> None:
    groups = np.repeat([0, 1, 2, 3], 5)
    x = np.tile(np.arange(5.0), 4) + groups * 100
    y = -np.tile(np.arange(5.0), 4) + groups  # falls with x inside each group
    r = within_kendall(x, y, groups, n_boot=500, n_perm=999, seed=0)
    assert r.estimate == -1.0
    assert r.p_value == pytest.approx(1 / 1000)  # no permutation is as extreme
    assert r.high <= -0.5


def test_within_kendall_is_reproducible_and_degenerate_safely() -> None:
    x, y, g = [1.0, 2, 3, 4], [4.0, 3, 1, 2], ["a", "a", "b", "b"]
    assert within_kendall(x, y, g, seed=5) == within_kendall(x, y, g, seed=5)
    r = within_kendall([1.0, 2, 3], [1.0, 2, 3], ["a", "b", "c"])
    assert np.isnan(r.estimate) and r.note == "no group has two checkpoints"
    r = within_kendall([1.0, 1, 2, 2], [1.0, 2, 3, 4], ["a", "a", "b", "b"])
    assert np.isnan(r.estimate) and "constant" in r.note
    r = within_kendall([1.0, np.nan, 2, 3], [1.0, 2, 3, 4], ["a", "a", "b", "b"], n_boot=10)
    assert r.dropped == 1 and r.n == 2
    with pytest.raises(ValueError, match="same length"):
        within_kendall([1.0, 2], [1.0, 2], ["a"])
