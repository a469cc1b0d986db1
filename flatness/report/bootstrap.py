r"""Bootstrap resamples and permutations of rank correlations, vectorized over them.

:func:`bootstrap` draws resamples of the points (with replacement, seeded) and computes
Kendall's τ-b or Spearman's ρ of all of them at once (:func:`resample_statistics`);
:func:`percentile_interval` turns them into an interval, :func:`clip_interval` clips it
to the τ-b the data's ties can reach (:func:`tau_bounds`); :func:`permutation_p_value` is
the exact p-value of a few points, from every permutation of one variable;
:func:`pooled_tau` is the within-group τ-b of many rows at once. Used by
:mod:`flatness.report.correlation` and :mod:`flatness.report.paired`.

Reference:
    B. Efron and R. J. Tibshirani (1993). An Introduction to the Bootstrap, ch. 13
    (percentile intervals). Chapman & Hall.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "bootstrap",
    "clip_interval",
    "percentile_interval",
    "permutation_p_value",
    "pooled_tau",
    "resample_statistics",
    "tau_bounds",
]

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


def _pair_signs(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """sgn(v_i - v_j) for every pair i < j of the last axis: shape (..., n(n-1)/2)."""
    i, j = np.triu_indices(values.shape[-1], k=1)
    return np.sign(values[..., i] - values[..., j])


def pooled_tau(
    groups: list[tuple[NDArray[np.float64], NDArray[np.float64]]],
) -> NDArray[np.float64]:
    r"""Pooled within-group τ-b of many rows at once; NaN where undefined.

    For groups g with values :math:`x_g, y_g` (last axis: the group's points; leading
    axes: rows such as permutations, resamples or simulations, broadcast against each
    other), :math:`\tau_w = \sum_g S_g / \sqrt{\sum_g (n_{0g}-n_{1g}) \sum_g (n_{0g}-n_{2g})}`
    with :math:`S_g` the concordant minus discordant pairs of group g.

    Args:
        groups: ``(x, y)`` per group, arrays of shape ``(..., n_g)``.

    Returns:
        τ_w per row (the broadcast leading shape).
    """
    num: NDArray[np.float64] | float = 0.0
    den_x: NDArray[np.float64] | float = 0.0
    den_y: NDArray[np.float64] | float = 0.0
    for xs, ys in groups:
        sx, sy = _pair_signs(xs), _pair_signs(ys)
        num = num + (sx * sy).sum(axis=-1)
        den_x = den_x + np.abs(sx).sum(axis=-1)
        den_y = den_y + np.abs(sy).sum(axis=-1)
    den = np.sqrt(np.asarray(den_x, dtype=float) * np.asarray(den_y, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.asarray(num, dtype=float) / np.where(den > 0, den, 1), np.nan)


def tau_bounds(x: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None) -> tuple[float, float]:
    r"""The smallest and largest τ-b any pairing of these x and y values can reach.

    Ties cap τ-b below 1 in size: with x tied in a pair, no pairing makes that pair
    concordant, while the denominator :math:`\sqrt{(n_0-n_1)(n_0-n_2)}` does not change
    with the pairing. The largest τ-b pairs the sorted x with the sorted y (every pair
    untied in both is concordant), the smallest pairs the sorted x with the reversed
    sorted y. With ``groups``, the same holds for the pooled within-group τ-b
    (:func:`pooled_tau`), sorting inside every group. A bootstrap resample can fall
    outside this range (a resample that draws no tied point is untied), so intervals are
    clipped to it (:func:`clip_interval`). Non-finite pairs are dropped.

    Args:
        x: Values of the first variable.
        y: Values of the second variable, same length.
        groups: Optional group label per point (pairs count only within a group).

    Returns:
        ``(low, high)``; ``(nan, nan)`` where τ-b is undefined (a constant variable, no
        pair).

    Examples:
        >>> tau_bounds([1, 2, 3, 4], [4, 3, 2, 1])
        (-1.0, 1.0)
        >>> low, high = tau_bounds([1, 1, 2, 3], [1, 2, 3, 4])   # x tied once
        >>> round(low, 4), round(high, 4)
        (-0.9129, 0.9129)
    """
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    labels = (
        np.zeros(xa.shape, dtype=object) if groups is None else np.asarray(groups, dtype=object)
    )
    if not xa.shape == ya.shape == labels.shape:
        raise ValueError(
            f"x, y and groups must have the same length, got {xa.size}, {ya.size}, {labels.size}"
        )
    keep = np.isfinite(xa) & np.isfinite(ya)
    up, down = [], []
    for label in dict.fromkeys(labels[keep].tolist()):
        member = keep & (labels == label)
        xs, ys = np.sort(xa[member]), np.sort(ya[member])
        up.append((xs, ys))
        down.append((xs, ys[::-1].copy()))
    if not up:
        return float("nan"), float("nan")
    return float(pooled_tau(down)), float(pooled_tau(up))


def clip_interval(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """Clip an interval's ends to ``bounds`` (NaN bounds or ends are left as they are).

    Returns:
        The clipped ``(low, high)``.

    Examples:
        >>> clip_interval(-0.4, 1.0, (-0.91, 0.91))
        (-0.4, 0.91)
    """
    lo, hi = bounds
    if math.isfinite(lo) and math.isfinite(low):
        low = min(max(low, lo), hi)
    if math.isfinite(hi) and math.isfinite(high):
        high = max(min(high, hi), lo)
    return low, high
