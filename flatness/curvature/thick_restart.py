r"""Extremal eigenpairs by the thick-restart Lanczos method (Wu & Simon 2000).

:func:`thick_restart_lanczos` grows a Lanczos basis with full reorthogonalization
(the kernel in :mod:`flatness.curvature.lanczos_kernel`) and, when it is full, restarts it
thickly from the most wanted Ritz vectors, with a certified residual stopping rule
(:func:`residual_bounds`). :func:`lanczos_eigenpairs` drives it: a warm or random
start, a deflated search for eigenvalues that a single Krylov sequence misses
(repeated or tightly clustered ones), and a final verification of the residuals with
one block product.

References:
    K. Wu and H. Simon (2000). Thick-restart Lanczos method for large symmetric
    eigenvalue problems. SIAM J. Matrix Anal. Appl. 22(2), 602–616.

    C. Lanczos (1950). An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators. J. Res. Nat. Bur. Standards 45, 255–282.

    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §8.1 (residual
    bounds) and §10.1 (Lanczos). Johns Hopkins.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.lanczos_kernel import (
    ROUNDOFF_FACTOR,
    new_direction,
    project_out,
    random_vector,
    start_vector,
)
from flatness.curvature.linear_operator import SymmetricOperator
from flatness.curvature.options import WHICH, Which, check_which
from flatness.results import Meter

__all__ = [
    "WHICH",
    "RitzPairs",
    "Which",
    "check_which",
    "default_basis_size",
    "lanczos_eigenpairs",
    "order_by_which",
    "residual_bounds",
    "thick_restart_lanczos",
]


class RitzPairs(NamedTuple):
    """Ritz approximations returned by :func:`thick_restart_lanczos` and :func:`lanczos_eigenpairs`.

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
            completion (or the space was exhausted), see :func:`lanczos_eigenpairs`.
        verified: Whether ``residuals`` were measured with a block product (``k``
            products, included in ``steps``) rather than estimated.
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


def default_basis_size(k: int, dim: int) -> int:
    """The default thick-restart basis size.

    Returns:
        ``max(2k + 10, 20)`` capped at ``dim``.
    """
    return min(max(2 * k + 10, 20), dim)


def _restart_selection(
    theta: np.ndarray, order: np.ndarray, k: int, m: int, which: str
) -> np.ndarray:
    """The Ritz vectors kept at a thick restart: the ``k + (m - k) // 2`` most wanted.

    At most ``m - 2`` (``m - 1`` for ``"LM"``) are kept, so that each cycle adds new
    directions. A restart acts as a polynomial filter with roots at the discarded Ritz
    values. For ``"LA"``/``"SA"`` these lie on the unwanted side, but for ``"LM"`` a
    discarded Ritz value beyond the other end of the spectrum would damp the
    eigenvectors there, which may be the wanted ones; so both extreme Ritz vectors are
    always kept for ``"LM"``.
    """
    extras: list[int] = []
    if which == "LM":
        candidates = order[: min(k + (m - k) // 2, m - 2)]
        extras = [int(e) for e in (np.argmax(theta), np.argmin(theta)) if e not in candidates]
    count = min(k + (m - k) // 2, m - 2, m - 1 - len(extras))
    return np.concatenate([order[:count], np.asarray(extras, dtype=order.dtype)])


def thick_restart_lanczos(
    op: SymmetricOperator,
    v0: Tensor,
    k: int,
    *,
    which: Which = "LA",
    tol: float = 1e-4,
    basis_size: int | None = None,
    max_matvecs: int | None = None,
    locked: Tensor | None = None,
    generator: torch.Generator | None = None,
    scale_hint: float = 0.0,
) -> RitzPairs:
    r"""k extremal eigenpairs by thick-restart Lanczos (Wu & Simon 2000).

    The basis :math:`V_j` is grown by Lanczos steps with full reorthogonalization; the
    Gram–Schmidt coefficients of :math:`A v_j` give column ``j`` of the projected matrix
    :math:`T_j = V_j^\top A V_j`, and

    .. math::
        A V_j = V_j T_j + f_j e_j^\top, \qquad \beta_j = \lVert f_j \rVert .

    For a Ritz pair :math:`(\theta, y = V_j s)` of :math:`T_j` this gives, at no extra
    product, the residual norm :math:`\lVert A y - \theta y\rVert = \beta_j |s_j|`
    (Golub & Van Loan §10.1.4). The Ritz pairs are checked after every step; the run
    stops when the ``k`` most wanted ones all satisfy :func:`residual_bounds`.

    When the basis reaches ``basis_size`` columns it is restarted thickly: the ``l``
    most wanted Ritz vectors are kept (``l = k + (m - k) // 2``, at most ``m - 2``; for
    ``"LM"`` both extreme ones too),
    :math:`T` becomes :math:`\mathrm{diag}(\theta_1..\theta_l)` bordered by the arrow
    :math:`\beta_m s_{m,i}`, and the Lanczos process continues from :math:`f_m/\beta_m`.
    Unlike implicit restarting this needs no shifts and keeps the Ritz vectors exactly.

    At a breakdown (:math:`\beta_j` at round-off level: an invariant subspace) the Ritz
    pairs found are exact; if they do not already answer the question, the process
    continues from a random vector orthogonal to the basis.

    Args:
        op: The symmetric operator.
        v0: The start vector, shape ``(dim,)``.
        k: How many eigenpairs to compute.
        which: ``"LA"`` (largest algebraic), ``"SA"`` (smallest) or ``"LM"`` (largest magnitude).
        tol: The relative residual tolerance (see :func:`residual_bounds`).
        basis_size: The largest basis before a restart; default :func:`default_basis_size`.
            Must be at least ``k + 2`` unless it covers the whole search space.
        max_matvecs: The most operator products to spend (default: unbounded).
        locked: Orthonormal vectors ``(dim, p)`` to deflate: the search runs in their
            orthogonal complement.
        generator: The CPU generator for random directions after a breakdown.
        scale_hint: A known lower bound on ``||A||`` for the round-off floor.

    Returns:
        :class:`RitzPairs` with estimated residuals.

    Raises:
        ValueError: If ``k`` exceeds the search space, ``tol`` is not positive,
            ``basis_size`` is below ``k + 2`` or ``v0`` has the wrong shape.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> ritz = thick_restart_lanczos(A, torch.ones(100, dtype=torch.float64), 2, tol=1e-10)
        >>> np.round(ritz.values, 8).tolist(), bool(ritz.converged.all())
        ([100.0, 99.0], True)
    """
    which = check_which(which)
    n = op.dim
    p = 0 if locked is None else int(locked.shape[1])
    free = n - p
    if not 1 <= k <= free:
        raise ValueError(f"k must be between 1 and {free} (the search space), got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    m = default_basis_size(k, free) if basis_size is None else min(int(basis_size), free)
    if m < free and m < k + 2:
        raise ValueError(f"basis_size must be at least k + 2 = {k + 2}, got {basis_size}")
    budget = math.inf if max_matvecs is None else int(max_matvecs)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    device, dtype = op.device, op.dtype
    eps = float(torch.finfo(dtype).eps)

    V = torch.zeros(n, m, device=device, dtype=dtype)
    T = np.zeros((m, m), dtype=np.float64)
    start = torch.as_tensor(v0).to(device=device, dtype=dtype).reshape(-1)
    if start.shape != (n,):
        raise ValueError(f"v0 must have shape ({n},), got {tuple(start.shape)}")
    start, _coef = project_out(start, V[:, :0], locked)
    norm = float(torch.linalg.vector_norm(start))
    first = start / norm if norm > 0 and math.isfinite(norm) else None
    if first is None:
        first = new_direction(n, gen, V[:, :0], locked)
    assert first is not None  # k <= free guarantees a nonzero complement
    V[:, 0] = first

    s = 0  # columns of T computed so far; V[:, s] is the next vector to multiply
    steps = restarts = 0
    scale = float(scale_hint)
    theta = np.zeros(0)
    S = np.zeros((0, 0))
    residuals = np.zeros(0)
    exhausted = False
    while steps < budget:
        w = op.matvec(V[:, s]).detach()
        steps += 1
        w, coef = project_out(w, V[:, : s + 1], locked)
        h = coef.detach().to(device="cpu", dtype=torch.float64).numpy()
        T[: s + 1, s] = h
        T[s, : s + 1] = h
        s += 1
        beta = float(torch.linalg.vector_norm(w))
        theta, S = np.linalg.eigh(T[:s, :s])
        scale = max(scale, float(np.abs(theta).max()), beta)
        residuals = np.abs(beta * S[s - 1, :])
        order = order_by_which(theta, which)
        wanted = order[:k]
        exhausted = s == free
        if exhausted:
            break
        if s >= k and bool(
            np.all(residuals[wanted] <= residual_bounds(theta[wanted], tol, scale, dtype))
        ):
            break
        if beta <= ROUNDOFF_FACTOR * eps * scale:
            following = new_direction(n, gen, V[:, :s], locked)
            if following is None:  # no room left: the space is spanned
                exhausted = True
                break
        else:
            following = w / beta
        if s == m:
            keep = _restart_selection(theta, order, k, m, which)
            Y = V[:, :s] @ torch.from_numpy(np.ascontiguousarray(S[:, keep])).to(device, dtype)
            V[:, : keep.size] = Y
            T[:] = 0.0
            T[np.arange(keep.size), np.arange(keep.size)] = theta[keep]
            s = int(keep.size)
            restarts += 1
            theta, S = theta[keep], np.eye(s)
            residuals = residuals[keep]
        V[:, s] = following

    order = order_by_which(theta, which)
    wanted = order[:k]
    values = np.full(k, np.nan)
    res = np.full(k, np.inf)
    X = torch.zeros(n, k, device=device, dtype=dtype)
    got = wanted.size
    if got:
        values[:got] = theta[wanted]
        res[:got] = residuals[wanted]
        coeffs = torch.from_numpy(np.ascontiguousarray(S[:, wanted])).to(device, dtype)
        X[:, :got] = V[:, : S.shape[0]] @ coeffs
    converged = np.zeros(k, dtype=bool)
    if got:
        converged[:got] = res[:got] <= residual_bounds(values[:got], tol, scale, dtype)
    return RitzPairs(values, X, res, converged, steps, restarts, exhausted, scale)


def _more_wanted(a: float, b: float, slack: float, which: str) -> bool:
    """Whether eigenvalue ``a`` belongs before ``b`` by more than ``slack``."""
    if which == "LA":
        return a > b + slack
    if which == "SA":
        return a < b - slack
    return abs(a) > abs(b) + slack


def lanczos_eigenpairs(
    op: SymmetricOperator,
    k: int,
    *,
    which: Which = "LA",
    tol: float = 1e-4,
    basis_size: int | None = None,
    max_matvecs: int | None = None,
    generator: torch.Generator | None = None,
    v0: Tensor | None = None,
    multiplicity_check: bool = True,
    verify: bool = True,
) -> RitzPairs:
    r"""k extremal eigenpairs of ``op``: thick-restart Lanczos, a deflated check, a verification.

    1. :func:`thick_restart_lanczos` from ``v0`` (default: a standard normal vector
       from ``generator``; a block of vectors starts from their sum, see
       :func:`~flatness.curvature.lanczos_kernel.start_vector`).
    2. A single Krylov sequence sees only one direction in each eigenspace, so it
       cannot find a second copy of a repeated eigenvalue, and resolves a tight
       cluster only after many steps; meanwhile the ``k``-th Ritz pair may converge to a
       less wanted eigenvalue. With ``multiplicity_check`` (and ``k >= 2``), the
       converged vectors :math:`X` are locked and one more eigenpair is sought in their
       orthogonal complement from a fresh random start; while it is more wanted than the
       ``k``-th (by more than the two residuals) it replaces that one and the search is
       repeated. The residual of such a pair, estimated in the complement, is increased
       by :math:`\lVert R_X\rVert_F` to bound the coupling to :math:`X`.
    3. With ``verify``, the residuals are recomputed with one block product,
       :math:`R = A X - X \Theta`, so the reported residuals are measured, not estimated
       (``k`` products, reserved from the budget when it allows).

    Args:
        op: The symmetric operator.
        k: How many eigenpairs.
        which: ``"LA"``, ``"SA"`` or ``"LM"``.
        tol: The relative residual tolerance (see :func:`residual_bounds`).
        basis_size: See :func:`thick_restart_lanczos`.
        max_matvecs: The most products for the whole call (default ``100 * basis_size``).
        generator: The CPU generator for all random vectors (default: seeded with 0).
        v0: A warm start: a vector ``(dim,)`` or a block ``(dim, m)`` of vectors near
            the wanted eigenvectors (default: a random vector from ``generator``).
        multiplicity_check: Run step 2.
        verify: Run step 3.

    Returns:
        :class:`RitzPairs`; ``steps`` counts all products spent, verification included.

    Raises:
        ValueError: If ``k`` is out of range, ``max_matvecs`` is not positive, or
            ``v0`` has the wrong shape.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum([5.0, 5.0, 5.0] + [1.0 * i / 50 for i in range(50)])
        >>> pairs = lanczos_eigenpairs(A, 3, tol=1e-10)   # a triple eigenvalue
        >>> np.round(pairs.values, 8).tolist(), bool(pairs.converged.all())
        ([5.0, 5.0, 5.0], True)
    """
    which = check_which(which)
    n = op.dim
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and dim={n}, got {k}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    m = default_basis_size(k, n) if basis_size is None else int(basis_size)
    budget = 100 * min(m, n) if max_matvecs is None else int(max_matvecs)
    if budget < 1:
        raise ValueError(f"max_matvecs must be positive, got {max_matvecs}")
    reserve = k if verify and budget >= 2 * k else 0
    meter = Meter(op)
    if v0 is None:
        start = torch.randn(n, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
    else:
        start = start_vector(v0, op)
    run = thick_restart_lanczos(
        op, start, k, which=which, tol=tol, basis_size=basis_size,
        max_matvecs=budget - reserve, generator=gen,
    )  # fmt: skip
    values, X, residuals = run.values.copy(), run.vectors, run.residuals.copy()
    restarts, scale = run.restarts, run.scale
    checked = run.exhausted
    if multiplicity_check and k >= 2 and not run.exhausted and bool(run.converged.all()):
        while True:
            if k == n:
                checked = True
                break
            remaining = budget - reserve - meter.matvecs
            if remaining <= 0:
                break
            extra = thick_restart_lanczos(
                op, random_vector(n, gen, X), 1, which=which, tol=tol,
                basis_size=basis_size,
                max_matvecs=remaining, locked=X, generator=gen, scale_hint=scale,
            )  # fmt: skip
            restarts += extra.restarts
            scale = max(scale, extra.scale)
            if not bool(extra.converged[0]):
                break
            mu = float(extra.values[0])
            r_mu = float(extra.residuals[0]) + float(np.sqrt(np.sum(residuals**2)))
            if not _more_wanted(mu, float(values[-1]), r_mu + float(residuals[-1]), which):
                checked = True
                break
            merged = np.append(values, mu)
            order = order_by_which(merged, which)[:k]
            X = torch.cat([X, extra.vectors], dim=1)[:, torch.from_numpy(order)]
            values = merged[order]
            residuals = np.append(residuals, r_mu)[order]
    verified = bool(reserve) and bool(np.all(np.isfinite(values)))
    if verified:
        AX = op.matmat(X).detach()
        theta_t = torch.from_numpy(values).to(op.device, op.dtype)
        measured = torch.linalg.vector_norm(AX - X * theta_t, dim=0)
        residuals = measured.detach().to(device="cpu", dtype=torch.float64).numpy()
    converged = np.isfinite(values) & (residuals <= residual_bounds(values, tol, scale, op.dtype))
    return RitzPairs(
        values=values,
        vectors=X,
        residuals=residuals,
        converged=converged,
        steps=meter.matvecs,
        restarts=restarts,
        exhausted=run.exhausted,
        scale=scale,
        multiplicity_checked=checked,
        verified=verified,
    )
