r"""Statistics a hostile reviewer accepts: paired tests, attainable p, Holm, power, noise floors.

A study trains every regime with the same seeds, so the seeds are *paired*: seed k's
small-batch and large-batch runs share their initialization and data order.
:func:`paired_test` uses that pairing (Wilcoxon signed-rank and sign test, both exact).
With a handful of seeds the smallest p a test can reach is far from zero, so every p
comes with it (:attr:`PairedTest.min_p`, :func:`mann_whitney_min_p`): five paired
seeds cannot give a two-sided p below 2/2⁵ = 0.0625, five against five unpaired runs
not below 2/C(10, 5) = 0.0079. A claim over several measures is "significant" only
after :func:`holm`'s correction. :func:`within_tau_power` says how often the
within-regime Kendall τ test would detect a real association of a given size for the
design's group sizes, and :func:`binomial_floor` how much a test accuracy moves from the
finite test set alone.

References:
    F. Wilcoxon (1945). Individual comparisons by ranking methods. Biometrics Bulletin
    1(6), 80–83.

    W. J. Dixon and A. M. Mood (1946). The statistical sign test. J. Am. Stat. Assoc.
    41(236), 557–566.

    S. Holm (1979). A simple sequentially rejective multiple test procedure. Scand. J.
    Statist. 6(2), 65–70.

    M. Greiner (1909). Über das Fehlersystem der Kollektivmaßlehre. Z. Math. Phys. 57,
    121–158 (for a bivariate normal, Kendall's τ = (2/π) arcsin r).

    H. B. Mann and D. R. Whitney (1947). On a test of whether one of two random variables
    is stochastically larger than the other. Ann. Math. Statist. 18(1), 50–60.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from flatness.report.bootstrap import pooled_tau, tau_bounds
from flatness.report.stats import format_p_value, mann_whitney_min_p
from flatness.results import PlainData

__all__ = [
    "ENUMERATE_UP_TO",
    "POWER_PERMUTATIONS",
    "PairedTest",
    "binomial_floor",
    "holm",
    "mann_whitney_min_p",
    "paired_min_p",
    "paired_test",
    "tau_bounds",
    "within_tau_power",
]

K = TypeVar("K", bound=Hashable)

ENUMERATE_UP_TO = 20
"""Up to this many nonzero differences the signed-rank p with ties is exact (2^n sign flips)."""

POWER_PERMUTATIONS = 200
"""Permutations per simulated data set in :func:`within_tau_power` (the report's test uses
2000; 200 keep the simulation fast and resolve p down to 1/201)."""

_CHUNK_CELLS = 1 << 22


# --------------------------------------------------------------------------- paired test


@dataclass(frozen=True)
class PairedTest(PlainData):
    """Exact paired tests of b against a over the seeds present in both.

    Attributes:
        n: Pairs compared (keys in both, both values finite).
        wins: Pairs with b > a.
        losses: Pairs with b < a.
        ties: Pairs with b == a (left out of both tests).
        wilcoxon_p: Two-sided Wilcoxon signed-rank p (exact; NaN without a nonzero pair).
        sign_p: Two-sided sign-test p (exact binomial over the untied pairs).
        min_p: The smallest two-sided p either test can reach with ``n`` pairs, 2/2^n
            (capped at 1).
        method: How ``wilcoxon_p`` was computed: ``"exact"`` (scipy's exact null),
            ``"sign-flip"`` (every sign flip of the signed average ranks, for ties),
            ``"normal"`` (above :data:`ENUMERATE_UP_TO` tied pairs) or ``""``.
        median_difference: Median of b - a over the pairs (NaN for none).
        note: Why a value is undefined (``""`` when everything is defined).
    """

    n: int
    wins: int
    losses: int
    ties: int
    wilcoxon_p: float
    sign_p: float
    min_p: float
    method: str
    median_difference: float
    note: str = ""

    def text(self) -> str:
        """Short human form: wins, both p-values and the smallest attainable p.

        Examples:
            >>> t = paired_test({k: 0.0 for k in range(5)}, {k: k + 1.0 for k in range(5)})
            >>> t.text()  # doctest: +NORMALIZE_WHITESPACE
            'b > a in 5/5 seeds, Wilcoxon p = 0.06, sign p = 0.06
             (p ≥ 0.06 attainable with 5 pairs)'
        """
        if self.n == 0:
            return f"n/a ({self.note})" if self.note else "n/a"
        return (
            f"b > a in {self.wins}/{self.n} seeds, Wilcoxon p = {format_p_value(self.wilcoxon_p)}, "
            f"sign p = {format_p_value(self.sign_p)} "
            f"(p ≥ {format_p_value(self.min_p)} attainable with {self.n} pairs)"
        )


def paired_min_p(n: int) -> float:
    """The smallest two-sided p of an exact sign or signed-rank test over ``n`` pairs: 2/2^n.

    Returns:
        ``min(1, 2 / 2**n)``; 1 for ``n <= 1``.

    Examples:
        >>> paired_min_p(5), paired_min_p(3)
        (0.0625, 0.25)
    """
    return 1.0 if n <= 1 else min(1.0, 2.0 / 2.0**n)


def _signed_rank_p(d: NDArray[np.float64]) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p of nonzero differences ``d``, and how it was computed."""
    absd = np.abs(d)
    if np.unique(absd).size == absd.size:
        res = scipy.stats.wilcoxon(d, method="exact")
        return float(res.pvalue), "exact"
    if d.size > ENUMERATE_UP_TO:
        res = scipy.stats.wilcoxon(d, method="approx", correction=False)
        return float(res.pvalue), "normal"
    ranks = scipy.stats.rankdata(absd)  # average ranks for ties: multiples of 1/2
    observed = abs(float(np.sum(np.sign(d) * ranks)))
    m = d.size
    count = 0
    block = 1 << min(m, 16)
    codes = np.arange(block, dtype=np.int64)
    low_signs = 1 - 2 * ((codes[:, None] >> np.arange(min(m, 16))) & 1)
    low_sum = low_signs @ ranks[: min(m, 16)]
    high_ranks = ranks[min(m, 16) :]
    for high in range(1 << max(0, m - 16)):
        bits = (high >> np.arange(high_ranks.size)) & 1
        total = low_sum + float(np.sum((1 - 2 * bits) * high_ranks))
        # doubled sums are integers, so the comparison is exact
        count += int(np.sum(np.abs(2 * total) >= 2 * observed - 1e-9))
    return count / 2.0**m, "sign-flip"


def paired_test(a: Mapping[K, float], b: Mapping[K, float]) -> PairedTest:
    r"""Exact paired tests of b against a over the keys (seeds) present in both.

    The differences :math:`d_k = b_k - a_k` of the keys where both values are finite
    are tested two ways, both two-sided and exact:

    * the Wilcoxon signed-rank test (Wilcoxon, 1945) on the nonzero differences:
      :math:`T = \sum_k \operatorname{sgn}(d_k) R_k` with :math:`R_k` the rank of
      :math:`|d_k|`. Without ties in :math:`|d|`, scipy's exact null
      (``scipy.stats.wilcoxon(method="exact")``); with ties, the exact sign-flip
      permutation of the signed average ranks (all :math:`2^m` flips, for up to
      :data:`ENUMERATE_UP_TO` nonzero differences; above that the normal approximation);
    * the sign test (Dixon & Mood, 1946): wins of b among the untied pairs against
      Binomial(m, 1/2).

    Both reach at best :math:`p = 2/2^n` (:func:`paired_min_p`): five seeds cannot give
    p < 0.0625, however large the effect.

    Args:
        a: Values by seed (e.g. the SB run's sharpness).
        b: Values by seed (e.g. the LB run's sharpness).

    Returns:
        A :class:`PairedTest`; with no pair (or only tied pairs) the p-values are NaN
        and ``note`` says why.

    Examples:
        >>> t = paired_test({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0, 5: 6.0},
        ...                 {0: 2.0, 1: 4.5, 2: 3.5, 3: 8.0, 4: 5.0, 5: 7.0})
        >>> t.n, t.wins, t.ties, round(t.sign_p, 4), t.min_p
        (6, 5, 1, 0.0625, 0.03125)
    """
    keys = [k for k in a if k in b and math.isfinite(float(a[k])) and math.isfinite(float(b[k]))]
    diffs = np.array([float(b[k]) - float(a[k]) for k in keys], dtype=np.float64)
    n = int(diffs.size)
    wins, losses = int(np.sum(diffs > 0)), int(np.sum(diffs < 0))
    ties = n - wins - losses
    nan = float("nan")
    median = float(np.median(diffs)) if n else nan
    if wins + losses == 0:
        note = "no seed was trained in both" if n == 0 else "every pair is tied"
        return PairedTest(n, wins, losses, ties, nan, nan, paired_min_p(n), "", median, note)
    sign_p = float(scipy.stats.binomtest(wins, wins + losses, 0.5).pvalue)
    wilcoxon_p, method = _signed_rank_p(diffs[diffs != 0])
    return PairedTest(
        n=n,
        wins=wins,
        losses=losses,
        ties=ties,
        wilcoxon_p=min(1.0, wilcoxon_p),
        sign_p=min(1.0, sign_p),
        min_p=paired_min_p(n),
        method=method,
        median_difference=median,
    )


# --------------------------------------------------------------------------- Holm


def holm(p_values: ArrayLike) -> NDArray[np.float64]:
    r"""Holm's (1979) step-down adjusted p-values; NaN entries stay NaN and do not count.

    With the m finite p-values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`, the
    adjusted value of the i-th is
    :math:`\max_{j \le i} \min\big(1, (m - j + 1)\, p_{(j)}\big)`. Rejecting where the
    adjusted p is at most α controls the family-wise error rate at α for any dependence
    between the tests.

    Args:
        p_values: The raw p-values (any shape; NaN for tests that did not run).

    Returns:
        The adjusted p-values, same shape.

    Examples:
        >>> holm([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
        [0.03, 0.06, 0.06, 0.02]
        >>> holm([0.02, float("nan"), 0.04]).tolist()
        [0.04, nan, 0.04]
    """
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(flat))
    m = finite.size
    if m:
        order = finite[np.argsort(flat[finite], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
        out[order] = np.maximum.accumulate(scaled)
    return out.reshape(p.shape)


# --------------------------------------------------------------------------- noise floor


def binomial_floor(accuracy: float, n_test: int) -> float:
    r"""The standard deviation of a test accuracy from the finite test set, in points.

    A classifier with true accuracy p scored on n independent test examples has an
    observed accuracy with standard deviation :math:`\sqrt{p(1-p)/n}`; two seeds whose
    accuracies differ by less than this are not told apart by the test set.

    Args:
        accuracy: The accuracy as a fraction in [0, 1].
        n_test: Test-set size.

    Returns:
        :math:`100\sqrt{p(1-p)/n}` (points); NaN for a non-finite accuracy or no example.

    Raises:
        ValueError: If ``accuracy`` is outside [0, 1] (percentages are not accepted).

    Examples:
        >>> round(binomial_floor(0.9, 1000), 3)
        0.949
    """
    p = float(accuracy)
    if not math.isfinite(p) or n_test <= 0:
        return float("nan")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r}")
    return 100.0 * math.sqrt(p * (1.0 - p) / n_test)


# --------------------------------------------------------------------------- power


def within_tau_power(
    group_sizes: Sequence[int],
    tau: float,
    *,
    n_sim: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    n_perm: int = POWER_PERMUTATIONS,
) -> float:
    r"""Simulated power of the pooled within-group Kendall τ permutation test.

    The test is :func:`flatness.report.correlation.within_kendall`'s: the pooled
    within-group τ-b, its p-value
    :math:`(1 + \#\{|\tau_{perm}| \ge |\tau_w|\}) / (1 + n_{perm})` from shuffling y
    within every group. Each simulated data set draws, inside every group, bivariate
    normal pairs with Pearson :math:`r = \sin(\pi\tau/2)`, whose Kendall τ is ``tau``
    (Greiner's relation); power is the share of the ``n_sim`` data sets with
    p ≤ ``alpha``. The simulation uses ``n_perm`` permutations per data set
    (:data:`POWER_PERMUTATIONS`, fewer than the report's 2000).

    Args:
        group_sizes: Checkpoints per group (groups of fewer than 2 add no pair).
        tau: The true within-group Kendall τ, in [-1, 1].
        n_sim: Simulated data sets.
        alpha: Significance level.
        seed: Seed of the simulation.
        n_perm: Permutations per simulated data set.

    Returns:
        The estimated power (its Monte Carlo sd is about sqrt(power(1-power)/n_sim));
        NaN when no group has two checkpoints.

    Raises:
        ValueError: For ``tau`` outside [-1, 1], ``alpha`` outside (0, 1) or a
            non-positive ``n_sim`` or ``n_perm``.

    Examples:
        >>> within_tau_power([5, 5], 0.0, n_sim=400) < 0.1
        True
    """
    if not -1.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [-1, 1], got {tau!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_sim <= 0 or n_perm <= 0:
        raise ValueError(f"n_sim and n_perm must be positive, got {n_sim}, {n_perm}")
    sizes = [int(g) for g in group_sizes if int(g) >= 2]
    if not sizes:
        return float("nan")
    r = math.sin(math.pi * tau / 2.0)
    cov = np.array([[1.0, r], [r, 1.0]])
    rng = np.random.default_rng(seed)
    pairs = sum(g * (g - 1) // 2 for g in sizes)
    chunk = max(1, _CHUNK_CELLS // (pairs * (n_perm + 1)))
    rejected = 0
    for start in range(0, n_sim, chunk):
        rows = min(chunk, n_sim - start)
        parts, shuffled = [], []
        for g in sizes:
            xy = rng.multivariate_normal([0.0, 0.0], cov, size=(rows, g))
            x, y = xy[..., 0], xy[..., 1]
            parts.append((x, y))
            perm_y = rng.permuted(np.broadcast_to(y[:, None, :], (rows, n_perm, g)), axis=-1)
            shuffled.append((x[:, None, :], perm_y))
        observed = pooled_tau(parts)
        null = pooled_tau(shuffled)
        exceed = np.sum(np.abs(null) >= np.abs(observed)[:, None] - 1e-12, axis=1)
        p = (1 + exceed) / (1 + n_perm)
        rejected += int(np.sum(np.isfinite(observed) & (p <= alpha)))
    return rejected / n_sim
