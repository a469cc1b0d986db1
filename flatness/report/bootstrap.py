r"""Bootstrap resamples of rank correlations, vectorized over the resamples.

:func:`bootstrap` draws resamples of the points (with replacement, seeded) and computes
Kendall's τ-b or Spearman's ρ of all of them at once (:func:`resample_statistics`);
:func:`percentile_interval` turns them into an interval. Used by
:mod:`flatness.report.correlation`.

Reference:
    B. Efron and R. J. Tibshirani (1993). An Introduction to the Bootstrap, ch. 13
    (percentile intervals). Chapman & Hall.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from numpy.typing import NDArray

__all__ = ["bootstrap", "percentile_interval", "resample_statistics"]

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
