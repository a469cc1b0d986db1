r"""Bootstrap resamples and permutations of rank correlations, vectorized over them.

:func:`bootstrap` draws resamples of the points (with replacement, seeded) and computes
Kendall's τ-b or Spearman's ρ of all of them at once (:func:`resample_statistics`);
:func:`percentile_interval` turns them into an interval; :func:`permutation_p_value` is
the exact p-value of a few points, from every permutation of one variable. Used by
:mod:`flatness.report.correlation`.

Reference:
    B. Efron and R. J. Tibshirani (1993). An Introduction to the Bootstrap, ch. 13
    (percentile intervals). Chapman & Hall.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import scipy.stats
from numpy.typing import NDArray

__all__ = ["bootstrap", "percentile_interval", "permutation_p_value", "resample_statistics"]

# Bootstrap resamples are processed in chunks of about this many (resample, point) cells.
_CHUNK_CELLS = 1 << 20


def _kendall_rows(
    counts: NDArray[np.float64],
    concord: NDArray[np.float64],
    ties_x: NDArray[np.float64],
    ties_y: NDArray[np.float64],
) -> NDArray[np.float64]:
    r"""Kendall's tau-b of many resamples, each given by how often it drew each point.

    For a resample :math:`z_1..z_n` of the original points, the sign-matrix form of tau-b
    is :math:`\tau_b = S / \sqrt{(n_0 - n_1)(n_0 - n_2)}` with
    :math:`S = \sum_{i<j} \operatorname{sgn}(x_{z_i}-x_{z_j})\operatorname{sgn}(y_{z_i}-y_{z_j})`,
    :math:`n_0 = n(n-1)/2` and :math:`n_1` (:math:`n_2`) the pairs tied in x (y). The sign
    product of two draws depends only on which original points they are, so with
    :math:`P_{kl} = \operatorname{sgn}(x_k-x_l)\operatorname{sgn}(y_k-y_l)` and the draw
    counts :math:`w_k` of a resample, :math:`S = \tfrac12 w^\top P w` (:math:`P_{kk}=0`),
    and with :math:`T^x_{kl} = [x_k = x_l]`, :math:`n_1 = \tfrac12 (w^\top T^x w - n)`.
    All quantities are small integers, so the float64 arithmetic is exact.
    """
    n = counts[0].sum()
    n0 = n * (n - 1) / 2
    s = 0.5 * np.einsum("ck,ck->c", counts @ concord, counts)
    n1 = 0.5 * (np.einsum("ck,ck->c", counts @ ties_x, counts) - n)
    n2 = 0.5 * (np.einsum("ck,ck->c", counts @ ties_y, counts) - n)
    denom = (n0 - n1) * (n0 - n2)
    out = np.full(counts.shape[0], np.nan)
    ok = denom > 0
    out[ok] = s[ok] / np.sqrt(denom[ok])
    return out


def _spearman_rows(xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spearman's rho of each row pair: the Pearson correlation of average ranks."""
    rx = scipy.stats.rankdata(xs, axis=1)
    ry = scipy.stats.rankdata(ys, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    sxx = np.einsum("ck,ck->c", rx, rx)
    syy = np.einsum("ck,ck->c", ry, ry)
    sxy = np.einsum("ck,ck->c", rx, ry)
    out = np.full(xs.shape[0], np.nan)
    ok = (sxx > 0) & (syy > 0)
    out[ok] = sxy[ok] / np.sqrt(sxx[ok] * syy[ok])
    return np.clip(out, -1.0, 1.0)


def resample_statistics(
    x: NDArray[np.float64], y: NDArray[np.float64], indices: NDArray[np.intp], method: str
) -> NDArray[np.float64]:
    """The correlation of each resample ``(x[indices[r]], y[indices[r]])``; nan if degenerate.

    Args:
        x: Finite values, shape ``(n,)``.
        y: Finite values, shape ``(n,)``.
        indices: Resample indices into ``x``/``y``, shape ``(resamples, n)``.
        method: ``"kendall"`` or ``"spearman"``.

    Returns:
        One statistic per resample, shape ``(resamples,)``.
    """
    if method == "spearman":
        return _spearman_rows(x[indices], y[indices])
    n = x.shape[0]
    rows = indices.shape[0]
    flat = (indices + n * np.arange(rows)[:, None]).ravel()
    counts = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)
    sign_x = np.sign(x[:, None] - x[None, :])
    sign_y = np.sign(y[:, None] - y[None, :])
    ties_x = (sign_x == 0).astype(np.float64)
    ties_y = (sign_y == 0).astype(np.float64)
    return _kendall_rows(counts, sign_x * sign_y, ties_x, ties_y)


def percentile_interval(values: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    """The (1 ∓ confidence)/2 quantiles of bootstrap values (Efron & Tibshirani, ch. 13).

    Returns:
        The interval's low and high ends.
    """
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap(
    x: NDArray[np.float64], y: NDArray[np.float64], method: str, n_boot: int, seed: int | None
) -> NDArray[np.float64]:
    """``n_boot`` resampled statistics, drawn in chunks of bounded memory.

    Returns:
        The statistic of each resample (NaN where the resample is degenerate).
    """
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        indices = rng.integers(0, n, size=(rows, n))
        out[start : start + rows] = resample_statistics(x, y, indices, method)
    return out


@lru_cache(maxsize=4)
def _permutations(n: int) -> NDArray[np.intp]:
    """Every ordering of ``range(n)``, one per row (the identity first)."""
    return np.array(list(itertools.permutations(range(n))), dtype=np.intp).reshape(-1, n)


def permutation_p_value(x: NDArray[np.float64], y: NDArray[np.float64], method: str) -> float:
    r"""The exact two-sided p-value of "no association" from every permutation of ``y``.

    Under the null hypothesis every pairing of the x values with the y values is equally
    likely, so the p-value is the share of the :math:`n!` pairings whose statistic is at
    least as far from zero as the observed one (the observed pairing included, so it is
    never 0). Ties are kept as they are (the test is conditional on the tied values).
    Only the numerator of each statistic depends on the pairing: Kendall's
    :math:`\sum_{i<j} \operatorname{sgn}(x_i-x_j)\operatorname{sgn}(y_i-y_j)` (an integer)
    and Spearman's :math:`\sum_i (r^x_i - \bar r)(r^y_i - \bar r)` (a multiple of 1/4), both
    exact in float64, so "at least as far" is decided without rounding.

    Args:
        x: Finite values, shape ``(n,)``, not constant; ``n!`` pairings are enumerated,
            so keep ``n`` small (8 gives 40320).
        y: Finite values, shape ``(n,)``, not constant.
        method: ``"kendall"`` or ``"spearman"``.

    Returns:
        The p-value, in ``[2/n!, 1]`` for data without ties.

    Examples:
        >>> x = np.array([16.5, 17.0, 18.8, 19.0]); y = np.array([0.94, 0.93, 0.51, 0.49])
        >>> round(permutation_p_value(x, y, "spearman"), 4)  # 2 of the 24 orderings
        0.0833
    """
    perms = _permutations(int(x.shape[0]))
    if method == "spearman":
        rx = scipy.stats.rankdata(x)
        ry = scipy.stats.rankdata(y)
        numerators = (ry[perms] - ry.mean()) @ (rx - rx.mean())
    else:
        # small integers (dense ranks of y, signs) keep the n! x n(n-1)/2 signs cheap
        i, j = np.triu_indices(x.shape[0], k=1)
        shuffled = scipy.stats.rankdata(y, method="dense").astype(np.int8)[perms]
        signs = np.sign(shuffled[:, i] - shuffled[:, j])
        numerators = (signs * np.sign(x[i] - x[j]).astype(np.int8)).sum(axis=1, dtype=np.int64)
    observed = abs(numerators[0])
    return float(np.mean(np.abs(numerators) >= observed))
