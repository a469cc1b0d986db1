r"""Rank correlations with percentile-bootstrap intervals, vectorized over resamples.

A report relates a sharpness measure to test accuracy over a handful of checkpoints
(5–50), with no reason to expect a linear relation: the summary is Kendall's τ-b or
Spearman's ρ with an honest interval. :func:`rank_correlation` never raises on
degenerate data (too few finite pairs, a constant variable): it returns ``nan`` with a
``note`` saying why.

References:
    M. G. Kendall (1945). The treatment of ties in ranking problems. Biometrika 33(3),
    239–251 (tau-b).

    C. Spearman (1904). The proof and measurement of association between two things.
    Am. J. Psychol. 15(1), 72–101.

    B. Efron and R. J. Tibshirani (1993). An Introduction to the Bootstrap, ch. 13
    (percentile intervals). Chapman & Hall.

    Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan and S. Bengio (2020). Fantastic
    generalization measures and where to find them. ICLR 2020 (rank correlation with
    the other hyperparameters held fixed, the idea behind :func:`within_kendall`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

from flatness.report.bootstrap import (
    bootstrap,
    clip_interval,
    percentile_interval,
    permutation_p_value,
    pooled_tau,
    tau_bounds,
)
from flatness.report.stats import as_vector, check_choice, format_p_value
from flatness.results import PlainData

__all__ = ["EXACT_UP_TO", "Correlation", "rank_correlation", "within_kendall"]

_METHODS = ("kendall", "spearman")

EXACT_UP_TO = 8
"""Up to this many pairs, p-values are exact: every permutation is enumerated (8! = 40320)."""


@dataclass(frozen=True)
class Correlation(PlainData):
    """A rank correlation with its bootstrap percentile interval.

    Attributes:
        method: ``"kendall"`` (tau-b) or ``"spearman"`` (rho).
        estimate: The correlation of the kept pairs (``nan`` when undefined).
        low: Lower end of the percentile bootstrap interval.
        high: Upper end of the percentile bootstrap interval.
        p_value: Two-sided p-value of "no association": exact (every permutation) for
            up to :data:`EXACT_UP_TO` pairs, else scipy's.
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
        """``"tau"`` for Kendall (over all pairs or within groups), ``"rho"`` for Spearman."""
        return "rho" if self.method == "spearman" else "tau"

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
    is NaN or infinite are dropped (and counted). The point estimate comes from
    :func:`scipy.stats.kendalltau` / :func:`scipy.stats.spearmanr`. The two-sided p-value
    is exact for up to :data:`EXACT_UP_TO` pairs: the share of all :math:`n!` pairings
    of the x and y values whose statistic is at least as extreme
    (:func:`~flatness.report.bootstrap.permutation_p_value`; never 0, ties included),
    where scipy's large-sample approximation for Spearman's rho is far off (it gives
    :math:`p = 0` for :math:`\rho = -1` at :math:`n = 4`, where the exact p is 1/12).
    Above that, the p-value is scipy's.

    The interval is the percentile bootstrap (Efron & Tibshirani, 1993, ch. 13): the
    kept pairs are resampled with replacement ``n_boot`` times with
    ``np.random.default_rng(seed)``, the statistic is recomputed on each resample
    (vectorized, in chunks of bounded memory), and the interval is the
    :math:`(1 \mp \text{confidence})/2` quantiles of those values. Resamples in which
    x or y is constant have no correlation; they are skipped and counted as
    ``degenerate``. A Kendall interval is clipped to the τ-b the data's ties can reach
    (:func:`~flatness.report.bootstrap.tau_bounds`): a resample that draws no tied
    point can reach ±1 where the data cannot.

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
    check_choice(method, _METHODS, "method")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    xa = as_vector(x, "x")
    ya = as_vector(y, "y")
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
    if n <= EXACT_UP_TO:
        p_value = permutation_p_value(xa, ya, method)

    stats = bootstrap(xa, ya, method, int(n_boot), seed)
    valid = stats[np.isfinite(stats)]
    degenerate = int(stats.size - valid.size)
    low = high = nan
    if n_boot == 0:
        note = "n_boot=0"
    elif valid.size == 0:
        note = "all bootstrap resamples degenerate"
    else:
        low, high = percentile_interval(valid, confidence)
        if method == "kendall":
            low, high = clip_interval(low, high, tau_bounds(xa, ya))
    return Correlation(
        estimate=estimate,
        low=low,
        high=high,
        p_value=p_value,
        degenerate=degenerate,
        note=note,
        **common,
    )


def within_kendall(
    x: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike,
    *,
    n_boot: int = 2000,
    n_perm: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Correlation:
    r"""Kendall's τ between x and y counted only within groups (e.g. one batch size).

    When both a sharpness measure and the test accuracy change with the batch size,
    their correlation over all checkpoints can come from the batch size alone. Counting
    only pairs of checkpoints that share a group (a regime: same batch size, different
    seeds) asks whether the measure still ranks checkpoints by accuracy when the
    training hyperparameters are held fixed (Jiang et al., 2020):

    .. math::
        \tau_w = \frac{\sum_g \sum_{i<j \in g} \operatorname{sgn}(x_i - x_j)
                  \operatorname{sgn}(y_i - y_j)}{\sqrt{\sum_g (n_{0g} - n_{1g})
                  \sum_g (n_{0g} - n_{2g})}},

    a tau-b over the pooled within-group pairs (:math:`n_{0g}` pairs in group g, of
    which :math:`n_{1g}`, :math:`n_{2g}` are tied in x, in y). The p-value is a
    permutation test: y is shuffled within every group ``n_perm`` times, and
    p = (1 + #{|τ_perm| ≥ |τ_w|}) / (1 + n_perm). The interval is a percentile
    bootstrap that resamples checkpoints within each group, clipped to the pooled τ-b
    the data's ties can reach (:func:`~flatness.report.bootstrap.tau_bounds`). Pairs
    with a non-finite x or y are dropped; groups with fewer than two checkpoints add no
    pair.

    Args:
        x: A measure per checkpoint.
        y: Test accuracy (or any outcome) per checkpoint.
        groups: A group label per checkpoint (the regime).
        n_boot: Bootstrap resamples (0: no interval).
        n_perm: Permutations for the p-value (0: no p-value).
        confidence: The interval's coverage, in (0, 1).
        seed: Seed of the resampling.

    Returns:
        A :class:`Correlation` with ``method="kendall-within"``; ``n`` counts the
        checkpoints in groups of two or more.

    Raises:
        ValueError: For a negative ``n_boot`` or ``n_perm``, a ``confidence`` outside
            (0, 1), or ``x``, ``y`` and ``groups`` of different lengths.

    Examples:
        >>> x = [1, 2, 3, 10, 20, 30]
        >>> y = [0.9, 0.8, 0.7, 0.95, 0.85, 0.75]   # falls with x inside each group
        >>> g = ["SB", "SB", "SB", "LB", "LB", "LB"]
        >>> r = within_kendall(x, y, g, n_boot=200, n_perm=200)
        >>> r.estimate, r.n
        (-1.0, 6)
        >>> round(rank_correlation(x, y, n_boot=0).estimate, 2)   # all pairs: weaker
        -0.2
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if isinstance(n_perm, bool) or not isinstance(n_perm, int | np.integer) or n_perm < 0:
        raise ValueError(f"n_perm must be a non-negative integer, got {n_perm!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    xa, ya = as_vector(x, "x"), as_vector(y, "y")
    labels = np.asarray(groups, dtype=object)
    if not (xa.shape == ya.shape == labels.shape):
        raise ValueError(
            f"x, y and groups must have the same length, got {xa.size}, {ya.size}, {labels.size}"
        )
    keep = np.isfinite(xa) & np.isfinite(ya)
    parts = []
    for label in dict.fromkeys(labels[keep].tolist()):
        member = keep & (labels == label)
        if member.sum() >= 2:
            parts.append((xa[member], ya[member]))
    n = int(sum(len(px) for px, _ in parts))
    common: dict[str, Any] = {
        "method": "kendall-within",
        "n": n,
        "dropped": int(keep.size - keep.sum()),
        "n_boot": int(n_boot),
        "confidence": float(confidence),
        "seed": seed,
    }
    nan = float("nan")
    estimate = float(pooled_tau([(px[None], py[None]) for px, py in parts])[0]) if parts else nan
    if not math.isfinite(estimate):
        note = "no group has two checkpoints" if not parts else "x or y is constant in every group"
        return Correlation(
            estimate=nan, low=nan, high=nan, p_value=nan, degenerate=0, note=note, **common
        )
    rng = np.random.default_rng(seed)
    p_value = nan
    if n_perm:
        permuted = [
            (np.broadcast_to(px, (n_perm, px.size)), rng.permuted(np.tile(py, (n_perm, 1)), axis=1))
            for px, py in parts
        ]
        null = pooled_tau(permuted)
        p_value = float((1 + np.sum(np.abs(null) >= abs(estimate) - 1e-12)) / (1 + n_perm))
    low = high = nan
    degenerate = 0
    note = ""
    if n_boot:
        draws = []
        for px, py in parts:
            idx = rng.integers(0, px.size, size=(n_boot, px.size))
            draws.append((px[idx], py[idx]))
        boot = pooled_tau(draws)
        valid = boot[np.isfinite(boot)]
        degenerate = int(boot.size - valid.size)
        if valid.size:
            low, high = percentile_interval(valid, confidence)
            low, high = clip_interval(low, high, tau_bounds(xa, ya, labels))
        else:
            note = "all bootstrap resamples degenerate"
    else:
        note = "n_boot=0"
    return Correlation(
        estimate=estimate,
        low=low,
        high=high,
        p_value=p_value,
        degenerate=degenerate,
        note=note,
        **common,
    )
