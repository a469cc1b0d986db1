r"""Statistics for reports: rank correlations with bootstrap intervals, rank tests, mean ± std.

The report relates a sharpness score to generalization over a handful of checkpoints
(Keskar et al., 2017, relate sharpness to the small-batch/large-batch generalization gap).
With 5–50 points and no reason to expect a linear relation, the natural summary is a
*rank* correlation with an honest interval, and a rank test for "is LB sharper than SB".
Everything here is numpy + scipy, takes plain arrays, never raises on degenerate data
(it returns ``nan`` with a ``note`` saying why) and returns frozen :class:`Result`
dataclasses that print well and convert to dicts.

References:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017). On
    large-batch training for deep learning: generalization gap and sharp minima. ICLR.

    M. G. Kendall (1945). The treatment of ties in ranking problems. Biometrika 33(3),
    239–251 (tau-b).

    C. Spearman (1904). The proof and measurement of association between two things.
    Am. J. Psychol. 15(1), 72–101.

    B. Efron and R. J. Tibshirani (1993). An Introduction to the Bootstrap, ch. 13
    (percentile intervals). Chapman & Hall.

    H. B. Mann and D. R. Whitney (1947). On a test of whether one of two random variables
    is stochastically larger than the other. Ann. Math. Statist. 18(1), 50–60.

    K. O. McGraw and S. P. Wong (1992). A common language effect size statistic.
    Psychol. Bull. 111(2), 361–365.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from flatness.results import Result

__all__ = [
    "Correlation",
    "MeanStd",
    "RankTest",
    "format_mean_std",
    "format_p_value",
    "mean_std",
    "paired_wins",
    "rank_correlation",
    "rank_test",
]

_METHODS = ("kendall", "spearman")
_ALTERNATIVES = ("two-sided", "less", "greater")
# Bootstrap resamples are processed in chunks of about this many (resample, point) cells.
_CHUNK_CELLS = 1 << 20

K = TypeVar("K", bound=Hashable)


# --------------------------------------------------------------------------- formatting


def format_p_value(p: float) -> str:
    """Format a p-value for tables: 2 decimals above 0.01, 3 above 0.001, else scientific.

    Examples:
        >>> format_p_value(0.2345), format_p_value(0.0034), format_p_value(2.1e-5)
        ('0.23', '0.003', '2.1e-05')
        >>> format_p_value(float("nan"))
        'n/a'
    """
    if not math.isfinite(p):
        return "n/a"
    if p >= 0.01:
        return f"{p:.2f}"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def _format_number(x: float) -> str:
    """Short form of a statistic such as U (integers without a decimal point)."""
    if not math.isfinite(x):
        return "nan"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.4g}"


def format_mean_std(mean: float, std: float, n: int, *, digits: int = 3) -> str:
    r"""Format a mean and standard deviation as ``"0.912 ± 0.004"`` for a table cell.

    The mean is shown with ``digits`` significant digits and the standard deviation is
    rounded to the same decimal place (so a spread smaller than the last shown digit
    prints as zeros). When :math:`|\bar x| < 10^{-3}` or :math:`|\bar x| \ge 10^5` both
    are written with one shared power of ten, ``"(9.12 ± 0.04)e-05"``. A single value
    (``n == 1``, or an undefined std) is printed without ``±``; no values (``n == 0``)
    print as an em dash.

    Args:
        mean: The sample mean.
        std: The sample standard deviation (``nan`` when undefined).
        n: The number of values behind the mean.
        digits: Significant digits of the mean (at least 1).

    Returns:
        The formatted string.

    Examples:
        >>> format_mean_std(0.91234, 0.0041, 5)
        '0.912 ± 0.004'
        >>> format_mean_std(0.91234, float("nan"), 1)
        '0.912'
        >>> format_mean_std(float("nan"), float("nan"), 0)
        '—'
        >>> format_mean_std(9.1234e-5, 4.2e-7, 3)
        '(9.12 ± 0.04)e-05'
        >>> format_mean_std(1234.5, 56.7, 4)
        '1234 ± 57'
    """
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    if n <= 0 or math.isnan(mean):
        return "—"
    if math.isinf(mean):
        return str(mean)
    show_std = n > 1 and math.isfinite(std)
    reference = mean if mean != 0.0 else (std if show_std and std != 0.0 else 0.0)
    if reference == 0.0:
        return "0 ± 0" if show_std else "0"
    # The exponent after rounding to `digits` significant digits (9.996 -> 1.00e+01).
    exponent = int(f"{abs(reference):.{digits - 1}e}".split("e")[1])
    if abs(reference) < 1e-3 or abs(reference) >= 1e5:
        scale = 10.0**exponent
        decimals = digits - 1
        body = f"{mean / scale:.{decimals}f}"
        if not show_std:
            return f"{body}e{exponent:+03d}"
        return f"({body} ± {abs(std) / scale:.{decimals}f})e{exponent:+03d}"
    decimals = max(0, digits - 1 - exponent)
    body = f"{mean:.{decimals}f}"
    return f"{body} ± {abs(std):.{decimals}f}" if show_std else body


# --------------------------------------------------------------------------- inputs


def _as_vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}; flatten it")
    return arr


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


# --------------------------------------------------------------------------- correlation


@dataclass(frozen=True)
class Correlation(Result):
    """A rank correlation with its bootstrap percentile interval.

    Attributes:
        method: ``"kendall"`` (tau-b) or ``"spearman"`` (rho).
        estimate: The correlation of the kept pairs (``nan`` when undefined).
        low: Lower end of the percentile bootstrap interval.
        high: Upper end of the percentile bootstrap interval.
        p_value: Two-sided p-value of "no association" from scipy.
        n: Number of pairs used (both values finite).
        dropped: Number of pairs dropped because x or y was NaN or infinite.
        n_boot: Number of bootstrap resamples drawn.
        degenerate: Resamples skipped because x or y was constant in them.
        confidence: Nominal coverage of the interval.
        seed: Seed of the bootstrap generator.
        note: Why a value is undefined (``""`` when everything is defined).
    """

    method: str
    estimate: float
    low: float
    high: float
    p_value: float
    n: int
    dropped: int
    n_boot: int
    degenerate: int
    confidence: float
    seed: int | None
    note: str = ""

    @property
    def symbol(self) -> str:
        """``"tau"`` for Kendall, ``"rho"`` for Spearman."""
        return "tau" if self.method == "kendall" else "rho"

    def text(self, digits: int = 2, *, name: str | None = None) -> str:
        """The short human form used by reports, ``"-0.62 [-0.80, -0.41]"``.

        Args:
            digits: Decimals of the estimate and the interval ends.
            name: Optional label put in front, e.g. ``name="τ"`` gives ``"τ = -0.62 [...]"``.

        Examples:
            >>> r = rank_correlation([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], n_boot=200)
            >>> r.text()
            '0.60 [0.11, 1.00]'
            >>> rank_correlation([1, 2, 3], [5, 5, 5]).text(name="tau")
            'tau = n/a (y is constant)'
        """
        if math.isnan(self.estimate):
            body = f"n/a ({self.note})" if self.note else "n/a"
        elif math.isnan(self.low) or math.isnan(self.high):
            body = f"{self.estimate:.{digits}f} (no interval: {self.note or 'undefined'})"
        else:
            body = f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{name} = {body}" if name else body

    def __repr__(self) -> str:
        parts = [f"{self.method} {self.symbol}={self.text()}"]
        if not math.isnan(self.estimate):
            parts.append(f"p={format_p_value(self.p_value)}")
        parts.append(f"n={self.n}")
        if self.dropped:
            parts.append(f"dropped={self.dropped}")
        if self.degenerate:
            parts.append(f"degenerate={self.degenerate}/{self.n_boot}")
        return f"Correlation({', '.join(parts)})"


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


def _resample_statistics(
    x: NDArray[np.float64], y: NDArray[np.float64], indices: NDArray[np.intp], method: str
) -> NDArray[np.float64]:
    """The correlation of each resample ``(x[indices[r]], y[indices[r]])``; nan if degenerate.

    Args:
        x: Finite values, shape ``(n,)``.
        y: Finite values, shape ``(n,)``.
        indices: Resample indices into ``x``/``y``, shape ``(resamples, n)``.
        method: ``"kendall"`` or ``"spearman"``.
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


def _bootstrap(
    x: NDArray[np.float64], y: NDArray[np.float64], method: str, n_boot: int, seed: int | None
) -> NDArray[np.float64]:
    """``n_boot`` resampled statistics (nan where degenerate), drawn in bounded chunks."""
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        indices = rng.integers(0, n, size=(rows, n))
        out[start : start + rows] = _resample_statistics(x, y, indices, method)
    return out


def rank_correlation(
    x: ArrayLike,
    y: ArrayLike,
    *,
    method: str = "kendall",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Correlation:
    r"""Rank correlation of paired values with a percentile bootstrap interval.

    Kendall's tau-b (Kendall, 1945) counts concordant minus discordant pairs, corrected
    for ties:

    .. math::
        \tau_b = \frac{\sum_{i<j} \operatorname{sgn}(x_i - x_j)\operatorname{sgn}(y_i - y_j)}
                      {\sqrt{(n_0 - n_1)(n_0 - n_2)}},\qquad n_0 = \binom{n}{2},

    where :math:`n_1` and :math:`n_2` are the numbers of pairs tied in x and in y.
    Spearman's rho is the Pearson correlation of the average ranks. Pairs where x or y
    is NaN or infinite are dropped (and counted). The point estimate and the two-sided
    p-value come from :func:`scipy.stats.kendalltau` / :func:`scipy.stats.spearmanr`.

    The interval is the percentile bootstrap (Efron & Tibshirani, 1993, ch. 13): the
    kept pairs are resampled with replacement ``n_boot`` times with
    ``np.random.default_rng(seed)``, the statistic is recomputed on each resample
    (vectorized, in chunks of bounded memory), and the interval is the
    :math:`(1 \mp \text{confidence})/2` quantiles of those values. Resamples in which
    x or y is constant have no correlation; they are skipped and counted as
    ``degenerate``.

    Never raises on degenerate data: with fewer than 3 finite pairs, or a constant x or
    y, the estimate, interval and p-value are ``nan`` and ``note`` says why.

    Args:
        x: Values of the first variable (e.g. a sharpness score per checkpoint).
        y: Values of the second variable (e.g. test accuracy), same length as ``x``.
        method: ``"kendall"`` (tau-b) or ``"spearman"`` (rho).
        n_boot: Number of bootstrap resamples; 0 gives no interval.
        confidence: Nominal coverage of the interval, in (0, 1).
        seed: Seed of the bootstrap generator (same seed, same interval).

    Returns:
        A :class:`Correlation`.

    Raises:
        ValueError: If ``method`` is unknown, x and y differ in shape, ``n_boot`` is
            negative or ``confidence`` is not in (0, 1).

    Examples:
        >>> sharpness = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        >>> accuracy = [0.95, 0.96, 0.93, 0.92, 0.94, 0.90, 0.91, 0.89]
        >>> r = rank_correlation(sharpness, accuracy, n_boot=500, seed=0)
        >>> round(r.estimate, 4), r.n
        (-0.7143, 8)
        >>> r.low <= r.estimate <= r.high
        True
        >>> rank_correlation([1, 2, float("nan")], [3, 4, 5]).note
        'fewer than 3 finite pairs'
    """
    _check_choice(method, _METHODS, "method")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    xa = _as_vector(x, "x")
    ya = _as_vector(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)

    common: dict[str, Any] = {
        "method": method,
        "n": n,
        "dropped": int(keep.size - n),
        "n_boot": int(n_boot),
        "confidence": float(confidence),
        "seed": seed,
    }
    nan = float("nan")
    note = ""
    if n < 3:
        note = "fewer than 3 finite pairs"
    else:
        const_x, const_y = bool(np.all(xa == xa[0])), bool(np.all(ya == ya[0]))
        if const_x and const_y:
            note = "x and y are constant"
        elif const_x:
            note = "x is constant"
        elif const_y:
            note = "y is constant"
    if note:
        return Correlation(
            estimate=nan, low=nan, high=nan, p_value=nan, degenerate=0, note=note, **common
        )

    if method == "kendall":
        res = scipy.stats.kendalltau(xa, ya)
    else:
        res = scipy.stats.spearmanr(xa, ya)
    estimate, p_value = float(res.statistic), float(res.pvalue)

    stats = _bootstrap(xa, ya, method, int(n_boot), seed)
    valid = stats[np.isfinite(stats)]
    degenerate = int(stats.size - valid.size)
    low = high = nan
    if n_boot == 0:
        note = "n_boot=0"
    elif valid.size == 0:
        note = "all bootstrap resamples degenerate"
    else:
        alpha = 1.0 - confidence
        low, high = (float(q) for q in np.quantile(valid, [alpha / 2, 1 - alpha / 2]))
    return Correlation(
        estimate=estimate,
        low=low,
        high=high,
        p_value=p_value,
        degenerate=degenerate,
        note=note,
        **common,
    )


# --------------------------------------------------------------------------- rank test


@dataclass(frozen=True)
class RankTest(Result):
    """A Mann–Whitney U test of sample a against sample b.

    Attributes:
        statistic: U of sample a: the number of pairs (a_i, b_j) with a_i > b_j, ties
            counted one half.
        p_value: p-value for ``alternative``.
        n_a: Finite values in a.
        n_b: Finite values in b.
        alternative: ``"two-sided"``, ``"less"`` (a tends to be smaller) or ``"greater"``.
        effect: Common-language effect size :math:`P(A > B) + \\tfrac12 P(A = B)
            = U / (n_a n_b)`.
        dropped: Non-finite values dropped from a and b together.
        note: Why a value is undefined (``""`` when everything is defined).
    """

    statistic: float
    p_value: float
    n_a: int
    n_b: int
    alternative: str
    effect: float
    dropped: int
    note: str = ""

    def text(self) -> str:
        """Short human form, e.g. ``"U = 25, p = 0.008 (5 vs 5)"``.

        Examples:
            >>> rank_test([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]).text()
            'U = 25, p = 0.008 (5 vs 5)'
        """
        if math.isnan(self.statistic):
            return f"n/a ({self.note})" if self.note else "n/a"
        return (
            f"U = {_format_number(self.statistic)}, p = {format_p_value(self.p_value)} "
            f"({self.n_a} vs {self.n_b})"
        )

    def __repr__(self) -> str:
        parts = [f"{self.alternative} {self.text()}"]
        if not math.isnan(self.effect):
            parts.append(f"effect={self.effect:.2f}")
        if self.dropped:
            parts.append(f"dropped={self.dropped}")
        return f"RankTest({', '.join(parts)})"


def rank_test(a: ArrayLike, b: ArrayLike, *, alternative: str = "two-sided") -> RankTest:
    r"""Mann–Whitney U test (Mann & Whitney, 1947) of sample a against sample b.

    :math:`U_a = \sum_{i,j} \big([a_i > b_j] + \tfrac12 [a_i = b_j]\big)`; the p-value
    comes from :func:`scipy.stats.mannwhitneyu` (``method="auto"``: exact for small
    samples without ties, normal approximation with tie correction otherwise). The
    effect size is the common-language effect size (McGraw & Wong, 1992)
    :math:`U_a / (n_a n_b) = P(A > B) + \tfrac12 P(A = B)`: 1 when every a exceeds every
    b, 0.5 for no tendency. Non-finite values are dropped and counted; an empty group
    gives ``nan`` with a note instead of an exception.

    Args:
        a: First sample (e.g. sharpness of large-batch runs).
        b: Second sample (e.g. sharpness of small-batch runs).
        alternative: ``"two-sided"``, ``"less"`` (a stochastically smaller) or
            ``"greater"`` (a stochastically larger).

    Returns:
        A :class:`RankTest`.

    Raises:
        ValueError: If ``alternative`` is not one of the three.

    Examples:
        >>> t = rank_test([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], alternative="greater")
        >>> t.statistic, t.effect, round(t.p_value, 4)
        (25.0, 1.0, 0.004)
    """
    _check_choice(alternative, _ALTERNATIVES, "alternative")
    aa = _as_vector(a, "a")
    ba = _as_vector(b, "b")
    keep_a, keep_b = np.isfinite(aa), np.isfinite(ba)
    aa, ba = aa[keep_a], ba[keep_b]
    dropped = int(keep_a.size - aa.size + keep_b.size - ba.size)
    n_a, n_b = int(aa.size), int(ba.size)
    if n_a == 0 or n_b == 0:
        empty = " and ".join(g for g, m in (("a", n_a), ("b", n_b)) if m == 0)
        verb = "have" if n_a == n_b == 0 else "has"
        nan = float("nan")
        return RankTest(
            statistic=nan,
            p_value=nan,
            n_a=n_a,
            n_b=n_b,
            alternative=alternative,
            effect=nan,
            dropped=dropped,
            note=f"{empty} {verb} no finite values",
        )
    res = scipy.stats.mannwhitneyu(aa, ba, alternative=alternative, method="auto")
    u = float(res.statistic)
    return RankTest(
        statistic=u,
        p_value=float(res.pvalue),
        n_a=n_a,
        n_b=n_b,
        alternative=alternative,
        effect=u / (n_a * n_b),
        dropped=dropped,
    )


# --------------------------------------------------------------------------- mean ± std


@dataclass(frozen=True)
class MeanStd(Result):
    """Mean and sample standard deviation of the finite values.

    Attributes:
        mean: Arithmetic mean (``nan`` for no values).
        std: Sample standard deviation with ``ddof=1`` (``nan`` for fewer than 2 values).
        n: Number of finite values.
        dropped: Number of non-finite values dropped.
    """

    mean: float
    std: float
    n: int
    dropped: int

    def text(self, digits: int = 3) -> str:
        """``"0.912 ± 0.004"``; see :func:`format_mean_std`."""
        return format_mean_std(self.mean, self.std, self.n, digits=digits)

    def __repr__(self) -> str:
        extra = f", dropped={self.dropped}" if self.dropped else ""
        return f"MeanStd({self.text()}, n={self.n}{extra})"


def mean_std(values: ArrayLike) -> MeanStd:
    r"""Mean :math:`\bar x` and sample standard deviation of the finite values.

    :math:`s = \sqrt{\sum_i (x_i - \bar x)^2 / (n - 1)}`; NaN and infinite values are
    dropped and counted.

    Args:
        values: The values (e.g. test accuracy of the seeds of one configuration).

    Returns:
        A :class:`MeanStd`.

    Examples:
        >>> mean_std([0.91, 0.915, 0.912, float("nan")])
        MeanStd(0.912 ± 0.003, n=3, dropped=1)
        >>> mean_std([0.5]).text()
        '0.500'
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    mean = float(finite.mean()) if n else float("nan")
    std = float(finite.std(ddof=1)) if n > 1 else float("nan")
    return MeanStd(mean=mean, std=std, n=n, dropped=int(arr.size - n))


# --------------------------------------------------------------------------- paired wins


def paired_wins(a: Mapping[K, float], b: Mapping[K, float]) -> tuple[int, int]:
    """Count the keys where ``b`` beats ``a``: ``(#{k: b[k] > a[k]}, #keys compared)``.

    Only keys present in both mappings with finite values in both are compared; equal
    values are not wins. Used for statements such as "LB sharper than SB in 4/5 seeds".

    Args:
        a: Values by key (e.g. sharpness of the small-batch run of each seed).
        b: Values by key (e.g. sharpness of the large-batch run of each seed).

    Returns:
        ``(wins, compared)``.

    Examples:
        >>> sb = {0: 1.0, 1: 2.0, 2: 3.0, 3: float("nan")}
        >>> lb = {0: 5.0, 1: 1.0, 2: 4.0, 3: 9.0, 4: 7.0}
        >>> paired_wins(sb, lb)
        (2, 3)
    """
    wins = compared = 0
    for key, va in a.items():
        if key not in b:
            continue
        fa, fb = float(va), float(b[key])
        if not (math.isfinite(fa) and math.isfinite(fb)):
            continue
        compared += 1
        wins += fb > fa
    return wins, compared
