"""Rank correlations: scipy agreement, the vectorized bootstrap, coverage, degenerate data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import scipy.stats

from flatness.report.correlation import Correlation, _resample_statistics, rank_correlation

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
    got = _resample_statistics(x, y, indices, method)
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
        got = _resample_statistics(x, y, indices, method)
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
