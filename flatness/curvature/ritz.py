r"""Ritz pairs: how they are ordered, when they count as converged, what suggests a cluster.

The thick-restart eigensolver (:mod:`flatness.curvature.thick_restart`) returns its
Ritz approximations as :class:`RitzPairs`, orders them most wanted first
(:func:`order_by_which`), certifies them by their residuals (:func:`residual_bounds`)
and, before it spends products on a search for missed copies of eigenvalues, asks
whether the values it found suggest a cluster (:func:`suggests_cluster`).

References:
    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., Thm. 8.1.15
    (residual bounds), §8.1.2 (Cauchy interlacing). Johns Hopkins.

    B. N. Parlett (1998). The Symmetric Eigenvalue Problem, §13.2 (a single Krylov
    sequence finds one vector per eigenspace). SIAM.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.lanczos_kernel import ROUNDOFF_FACTOR

__all__ = ["RitzPairs", "order_by_which", "residual_bounds", "suggests_cluster"]


class RitzPairs(NamedTuple):
    """Ritz approximations, as the thick-restart solvers return them.

    :func:`~flatness.curvature.thick_restart.thick_restart_lanczos` and
    :func:`~flatness.curvature.thick_restart.lanczos_eigenpairs` return them.

    Attributes:
        values: Ritz values, float64, ordered by ``which`` (most wanted first), shape ``(k,)``;
            ``nan`` where the budget ended before a value existed.
        vectors: Ritz vectors, shape ``(dim, k)``, on the operator's device and dtype.
        residuals: Residual norms :math:`\\lVert A x - \\theta x \\rVert` (estimated from the
            Lanczos relation, or computed with products when verified), shape ``(k,)``.
        converged: Whether each residual meets :func:`residual_bounds`, shape ``(k,)``.
        steps: Lanczos steps (operator products) spent expanding the basis.
        restarts: Thick restarts performed.
        exhausted: Whether the basis spanned the whole search space (exact results).
        scale: The largest ``|theta|`` seen, an estimate of ``||A||`` from below.
        multiplicity_checked: Whether the deflated search for missed eigenvalues ran to
            completion (or the space was exhausted), see
            :func:`~flatness.curvature.thick_restart.lanczos_eigenpairs`.
        verified: Whether ``residuals`` were measured with a block product (``k``
            products, included in ``steps``) rather than estimated.
        next_value: The most wanted Ritz value after the ``k`` wanted ones, a bound on
            the ``k+1``-th eigenvalue (Cauchy interlacing); ``nan`` when there is none.
        invariant: Whether the last Krylov space was invariant (its :math:`\beta` at
            round-off level): its Ritz values are exact, and copies of them outside it
            are out of the start vector's reach.
        products: :math:`A X`, the products of the Ritz vectors recombined from the
            products kept during the run (``None`` unless asked for).
        verification_matvecs: The products spent on the verification (``0`` when it
            used the kept products), included in ``steps``.
    """

    values: np.ndarray
    vectors: Tensor
    residuals: np.ndarray
    converged: np.ndarray
    steps: int
    restarts: int
    exhausted: bool
    scale: float
    multiplicity_checked: bool = False
    verified: bool = False
    next_value: float = math.nan
    invariant: bool = False
    products: Tensor | None = None
    verification_matvecs: int = 0


def order_by_which(values: np.ndarray, which: str) -> np.ndarray:
    """Indices that sort ``values`` most wanted first.

    ``"LA"``: descending; ``"SA"``: ascending; ``"LM"``: descending magnitude. The sort
    is stable, so ties keep their order.

    Returns:
        The permutation, an integer array.

    Examples:
        >>> order_by_which(np.array([1.0, -3.0, 2.0]), "LM").tolist()
        [1, 2, 0]
    """
    values = np.asarray(values, dtype=np.float64)
    if which == "LA":
        key = -values
    elif which == "SA":
        key = values
    else:
        key = -np.abs(values)
    return np.argsort(key, kind="stable")


def residual_bounds(values: np.ndarray, tol: float, scale: float, dtype: torch.dtype) -> np.ndarray:
    r"""The residual norms below which Ritz pairs count as converged.

    .. math::
        \lVert A x - \theta x \rVert \le \max\bigl(\mathrm{tol}\,|\theta|,\;
        100\,\varepsilon\,\lVert A \rVert\bigr)

    The first term is a relative residual: since some eigenvalue :math:`\lambda` of ``A``
    satisfies :math:`|\lambda - \theta| \le \lVert A x - \theta x \rVert` for a unit
    ``x`` (Golub & Van Loan, Thm. 8.1.15), it certifies :math:`\theta` to relative
    accuracy ``tol``. The second is the round-off floor of the dtype's machine epsilon
    :math:`\varepsilon` times the operator's scale, so that zero eigenvalues (low-rank
    operators) can be certified too.

    Returns:
        The bound per value, float64, with ``values``' shape.
    """
    eps = float(torch.finfo(dtype).eps)
    relative = tol * np.abs(np.asarray(values, dtype=np.float64))
    return np.maximum(relative, ROUNDOFF_FACTOR * eps * scale)


def suggests_cluster(
    values: np.ndarray, next_value: float, tol: float, scale: float, dtype: torch.dtype
) -> bool:
    r"""Whether found Ritz values suggest repeated or clustered eigenvalues.

    A single Krylov sequence holds one direction of each eigenspace (Parlett 1998,
    §13.2), so a copy of a repeated eigenvalue, or the partner of a pair closer than
    the sequence resolves, can be missing while every reported pair is certified by
    its residual. Nothing in the Ritz values reveals an isolated missing copy; what they
    do reveal is a spectrum with near-equal values: two of the wanted values, or the
    last wanted one and ``next_value`` (the next Ritz value, which bounds the next
    eigenvalue from the unwanted side by interlacing), closer than

    .. math::
        \delta = \sqrt{\mathrm{tol}}\,\max(|\theta_a|, |\theta_b|) +
        100\,\varepsilon\,\lVert A\rVert,

    values that agree in about half the digits the tolerance certifies. Only then is
    the deflated search of :func:`~flatness.curvature.thick_restart.lanczos_eigenpairs`
    worth its cost (about one more single-eigenvalue run).

    Args:
        values: The wanted Ritz values, most wanted first (``nan`` allowed).
        next_value: The next Ritz value, or ``nan``.
        tol: The relative residual tolerance.
        scale: An estimate of :math:`\lVert A\rVert`.
        dtype: The operator's dtype (for its machine epsilon).

    Returns:
        True when two neighbouring values are within :math:`\delta`.

    Examples:
        >>> suggests_cluster(np.array([5.0, 4.99999]), 1.0, 1e-4, 5.0, torch.float64)
        True
        >>> suggests_cluster(np.array([5.0, 4.0]), 1.0, 1e-4, 5.0, torch.float64)
        False
        >>> suggests_cluster(np.array([5.0, 4.0]), 3.9999, 1e-4, 5.0, torch.float64)
        True
    """
    found = np.asarray(values, dtype=np.float64)
    seq = np.append(found, next_value)
    seq = seq[np.isfinite(seq)]
    if seq.size < 2:
        return False
    seq = np.sort(seq)
    floor = ROUNDOFF_FACTOR * float(torch.finfo(dtype).eps) * scale
    near = np.diff(seq) <= math.sqrt(tol) * np.maximum(np.abs(seq[1:]), np.abs(seq[:-1])) + floor
    return bool(np.any(near))
