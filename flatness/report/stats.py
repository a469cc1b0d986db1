r"""Statistics for reports: rank tests, mean ± std, paired wins, and how numbers are written.

A report compares a handful of SB and LB checkpoints (Keskar et al., 2017): a rank test
answers "is LB sharper than SB" without assuming normal errors. Everything here is
numpy + scipy, takes plain arrays, never raises on degenerate data (it returns ``nan``
with a ``note`` saying why) and returns frozen :class:`Result` dataclasses that print
well and convert to dicts. Rank correlations with bootstrap intervals live in
:mod:`flatness.report.correlation`.

References:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017). On
    large-batch training for deep learning: generalization gap and sharp minima. ICLR.

    H. B. Mann and D. R. Whitney (1947). On a test of whether one of two random variables
    is stochastically larger than the other. Ann. Math. Statist. 18(1), 50–60.

    K. O. McGraw and S. P. Wong (1992). A common language effect size statistic.
    Psychol. Bull. 111(2), 361–365.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from flatness.results import PlainData

__all__ = [
    "MeanStd",
    "RankTest",
    "format_mean_std",
    "as_vector",
    "check_choice",
    "format_p_value",
    "mann_whitney_min_p",
    "mean_std",
    "paired_wins",
    "rank_test",
]

_ALTERNATIVES = ("two-sided", "less", "greater")

EXACT_SPLITS = 20000
"""With ties, the Mann–Whitney p is exact (every split of the pooled values) up to this
many splits C(n_a + n_b, n_a): 8 vs 8 is 12870."""

K = TypeVar("K", bound=Hashable)


# --------------------------------------------------------------------------- formatting


def format_p_value(p: float) -> str:
    """Format a p-value for tables: 2 decimals above 0.01, 3 above 0.001, else scientific.

    Returns:
        The cell text (``"n/a"`` for NaN).

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
    prints as zeros); the digits count from the larger of :math:`|\bar x|` and the
    standard deviation. When that is below :math:`10^{-3}` or at least :math:`10^5` both
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

    Raises:
        ValueError: If ``digits`` is below 1.

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
        >>> format_mean_std(-6.48e-6, 9.75e-5, 5)
        '(-0.65 ± 9.75)e-05'
    """
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    if n <= 0 or math.isnan(mean):
        return "—"
    if math.isinf(mean):
        return str(mean)
    show_std = n > 1 and math.isfinite(std)
    # The larger of |mean| and std sets the scale, so a spread far above a mean near zero
    # is not printed with a mantissa of millions.
    reference = max(abs(mean), abs(std) if show_std else 0.0)
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


def as_vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a 1-D float64 array; :class:`ValueError` naming ``name`` otherwise.

    Returns:
        The values as a 1-D float64 array.

    Raises:
        ValueError: If ``values`` is not one-dimensional.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}; flatten it")
    return arr


def check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    """:class:`ValueError` naming ``name`` and the choices unless ``value`` is one of them.

    Raises:
        ValueError: If ``value`` is not one of ``choices`` (naming them).
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


# --------------------------------------------------------------------------- rank test


@dataclass(frozen=True)
class RankTest(PlainData):
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
        min_p: The smallest p the test can reach for these sample sizes
            (:func:`mann_whitney_min_p`), e.g. 0.0079 two-sided for 5 vs 5.
    """

    statistic: float
    p_value: float
    n_a: int
    n_b: int
    alternative: str
    effect: float
    dropped: int
    note: str = ""
    min_p: float = float("nan")

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


def mann_whitney_min_p(n1: int, n2: int, *, alternative: str = "two-sided") -> float:
    r"""The smallest p an exact Mann–Whitney test can reach with samples of n1 and n2.

    Under the null hypothesis all :math:`\binom{n_1+n_2}{n_1}` assignments of the ranks
    to the groups are equally likely; the most extreme one has probability
    :math:`1/\binom{n_1+n_2}{n_1}`, doubled for the two-sided test. With ties the
    reachable p is larger still.

    Args:
        n1: Size of one sample.
        n2: Size of the other.
        alternative: ``"two-sided"``, ``"less"`` or ``"greater"``.

    Returns:
        The smallest p (at most 1); NaN when a sample is empty.

    Examples:
        >>> round(mann_whitney_min_p(5, 5), 4), round(mann_whitney_min_p(3, 3), 3)
        (0.0079, 0.1)
    """
    check_choice(alternative, _ALTERNATIVES, "alternative")
    if n1 <= 0 or n2 <= 0:
        return float("nan")
    sides = 2.0 if alternative == "two-sided" else 1.0
    return min(1.0, sides / math.comb(n1 + n2, n1))


def _exact_tied_p(
    a: NDArray[np.float64], b: NDArray[np.float64], u: float, alternative: str
) -> float:
    """Mann–Whitney p over every split of the pooled values into groups of len(a), len(b).

    :math:`U_a = R_a - n_a(n_a+1)/2` with :math:`R_a` the sum of a's average ranks; the
    two-sided p is twice the smaller tail (scipy's convention), at most 1.
    """
    ranks = scipy.stats.rankdata(np.concatenate([a, b]))
    n_a = a.size
    splits = np.array(list(itertools.combinations(range(ranks.size), n_a)), dtype=np.intp)
    # doubled U values are integers, so the tail comparisons are exact
    doubled = 2 * ranks[splits].sum(axis=1) - n_a * (n_a + 1)
    observed = 2 * u
    upper = float(np.mean(doubled >= observed - 1e-9))
    lower = float(np.mean(doubled <= observed + 1e-9))
    if alternative == "greater":
        return upper
    if alternative == "less":
        return lower
    return min(1.0, 2 * min(upper, lower))


def rank_test(a: ArrayLike, b: ArrayLike, *, alternative: str = "two-sided") -> RankTest:
    r"""Mann–Whitney U test (Mann & Whitney, 1947) of sample a against sample b.

    :math:`U_a = \sum_{i,j} \big([a_i > b_j] + \tfrac12 [a_i = b_j]\big)`; the p-value
    comes from :func:`scipy.stats.mannwhitneyu`: exact for small samples without ties;
    with ties, exact over every split of the pooled values while there are at most
    :data:`EXACT_SPLITS` of them, the normal approximation with tie correction above. The
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
    check_choice(alternative, _ALTERNATIVES, "alternative")
    aa = as_vector(a, "a")
    ba = as_vector(b, "b")
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
            min_p=mann_whitney_min_p(n_a, n_b, alternative=alternative),
        )
    res = scipy.stats.mannwhitneyu(aa, ba, alternative=alternative, method="auto")
    u, p_value = float(res.statistic), float(res.pvalue)
    tied = np.unique(np.concatenate([aa, ba])).size < n_a + n_b
    if tied and math.comb(n_a + n_b, n_a) <= EXACT_SPLITS:
        # exact conditional on the ties: the normal approximation can fall below the
        # smallest p the design allows (0.004 for 5 vs 5 tied values, floor 0.0079)
        p_value = _exact_tied_p(aa, ba, u, alternative)
    return RankTest(
        statistic=u,
        p_value=p_value,
        n_a=n_a,
        n_b=n_b,
        alternative=alternative,
        effect=u / (n_a * n_b),
        dropped=dropped,
        min_p=mann_whitney_min_p(n_a, n_b, alternative=alternative),
    )


# --------------------------------------------------------------------------- mean ± std


@dataclass(frozen=True)
class MeanStd(PlainData):
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
