r"""Extremal eigenpairs by the thick-restart Lanczos method (Wu & Simon 2000).

:func:`thick_restart_lanczos` grows a Lanczos basis with full reorthogonalization
(the kernel in :mod:`flatness.curvature.lanczos_kernel`) and, when it is full, restarts it
thickly from the most wanted Ritz vectors, with a certified residual stopping rule
(:func:`residual_bounds`). :func:`lanczos_eigenpairs` drives it: a warm or random
start, a deflated search for eigenvalues that a single Krylov sequence misses
(repeated or tightly clustered ones) where the values found suggest them
(:func:`~flatness.curvature.ritz.suggests_cluster`), and a final measurement of the
residuals from the products the run kept, or with one block product. The basis, its
size and its device are :mod:`flatness.curvature.lanczos_basis`'s.

References:
    K. Wu and H. Simon (2000). Thick-restart Lanczos method for large symmetric
    eigenvalue problems. SIAM J. Matrix Anal. Appl. 22(2), 602–616.

    C. Lanczos (1950). An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators. J. Res. Nat. Bur. Standards 45, 255–282.

    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §8.1 (residual
    bounds) and §10.1 (Lanczos). Johns Hopkins.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.lanczos_basis import default_basis_size, restart_in_place
from flatness.curvature.lanczos_kernel import (
    ROUNDOFF_FACTOR,
    new_direction,
    project_out,
    random_vector,
    reorthogonalize,
    start_vector,
)
from flatness.curvature.linear_operator import SymmetricOperator
from flatness.curvature.options import WHICH, Which, check_which
from flatness.curvature.ritz import RitzPairs, order_by_which, residual_bounds, suggests_cluster
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
    "suggests_cluster",
    "thick_restart_lanczos",
]


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
    basis_device: torch.device | str | None = None,
    keep_products: bool = False,
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
        basis_device: Where the basis lives (default: the operator's device); each
            product moves one vector there and back
            (:mod:`flatness.curvature.lanczos_basis`).
        keep_products: Keep the products :math:`W = A V` next to the basis (as many
            vectors again, rotated with it at restarts) and return :math:`A X = W S`
            with the Ritz vectors, so their residuals can be measured without
            multiplying again.

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
    dtype = op.dtype
    device = op.device if basis_device is None else torch.device(basis_device)
    eps = float(torch.finfo(dtype).eps)
    if locked is not None:
        locked = locked.to(device=device, dtype=dtype)

    # vectors as rows: V[:, j] is contiguous, and V[:, :s] a transposed view for matmul
    V = torch.zeros(m, n, device=device, dtype=dtype).T
    W = torch.zeros(m, n, device=device, dtype=dtype).T if keep_products else None
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
    known = V.new_zeros(0)  # the coupling of V[:, s] to the columns just before it
    steps = restarts = 0
    scale = float(scale_hint)
    theta = np.zeros(0)
    S = np.zeros((0, 0))
    residuals = np.zeros(0)
    exhausted = False
    beta = math.inf
    while steps < budget:
        w = op.matvec(V[:, s].to(op.device)).detach().to(device)
        steps += 1
        if W is not None:
            W[:, s] = w
        w, coef = reorthogonalize(w, V[:, : s + 1], known, locked)
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
            coupling = np.zeros(0)
        else:
            following = w / beta
            coupling = np.array([beta])
        if s == m:
            keep = _restart_selection(theta, order, k, m, which)
            coeffs = torch.from_numpy(np.ascontiguousarray(S[:, keep])).to(device, dtype)
            restart_in_place(V, s, coeffs)
            if W is not None:
                restart_in_place(W, s, coeffs)
            if coupling.size:  # A y_i = theta_i y_i + beta s_{m,i} v_{m+1}: the arrow
                coupling = beta * S[s - 1, keep]
            T[:] = 0.0
            T[np.arange(keep.size), np.arange(keep.size)] = theta[keep]
            s = int(keep.size)
            restarts += 1
            theta, S = theta[keep], np.eye(s)
            residuals = residuals[keep]
        V[:, s] = following
        known = torch.from_numpy(np.ascontiguousarray(coupling)).to(device, dtype)

    order = order_by_which(theta, which)
    wanted = order[:k]
    values = np.full(k, np.nan)
    res = np.full(k, np.inf)
    X = torch.zeros(n, k, device=device, dtype=dtype)
    AX = None if W is None else torch.zeros_like(X)
    got = wanted.size
    if got:
        values[:got] = theta[wanted]
        res[:got] = residuals[wanted]
        coeffs = torch.from_numpy(np.ascontiguousarray(S[:, wanted])).to(device, dtype)
        X[:, :got] = V[:, : S.shape[0]] @ coeffs
        if W is not None and AX is not None:
            AX[:, :got] = W[:, : S.shape[0]] @ coeffs
    converged = np.zeros(k, dtype=bool)
    if got:
        converged[:got] = res[:got] <= residual_bounds(values[:got], tol, scale, dtype)
    following_value = float(theta[order[k]]) if order.size > k else math.nan
    return RitzPairs(
        values, X, res, converged, steps, restarts, exhausted, scale,
        next_value=following_value, invariant=beta <= ROUNDOFF_FACTOR * eps * scale,
        products=AX,
    )  # fmt: skip


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
    multiplicity_check: bool | Literal["always"] = True,
    verify: bool = True,
    basis_device: torch.device | str | None = None,
    keep_products: bool | None = None,
) -> RitzPairs:
    r"""k extremal eigenpairs of ``op``: thick-restart Lanczos, a deflated check, a verification.

    1. :func:`thick_restart_lanczos` from ``v0`` (default: a standard normal vector
       from ``generator``; a block of vectors starts from their sum, see
       :func:`~flatness.curvature.lanczos_kernel.start_vector`).
    2. A single Krylov sequence sees only one direction in each eigenspace, so it
       cannot find a second copy of a repeated eigenvalue, and resolves a tight
       cluster only after many steps; meanwhile the ``k``-th Ritz pair may converge to a
       less wanted eigenvalue. The deflated search locks the converged vectors
       :math:`X` and seeks one more eigenpair in their orthogonal complement from a
       fresh random start; while it is more wanted than the ``k``-th (by more than the
       two residuals) it replaces that one and the search is repeated. The residual of
       such a pair, estimated in the complement, is increased by
       :math:`\lVert R_X\rVert_F` to bound the coupling to :math:`X`. It costs about
       one more single-eigenvalue run, so with ``multiplicity_check=True`` it runs only
       where the values found suggest a cluster
       (:func:`~flatness.curvature.ritz.suggests_cluster`: two of them, or the last
       and the next Ritz value, agreeing to :math:`\sqrt{\mathrm{tol}}`) or the run
       ended in an invariant Krylov space (a low-rank operator: its null space, or
       any repeated eigenvalue, has copies the start vector did not reach); with
       ``"always"`` it always runs. ``multiplicity_checked`` says whether it ran to
       its end: an isolated missing copy shows in no Ritz value, so a result that was
       not searched says so rather than vouching for its completeness.
    3. With ``verify``, the residuals are measured, not estimated from the recurrence:
       :math:`R = A X - X \Theta` with :math:`A X` recombined from the products the
       run kept (``keep_products``: no product more; :math:`A X = A V S = W S` by
       linearity, with each column of :math:`W` an actual product of the operator, so
       a basis that lost orthogonality or an operator that is not symmetric shows in
       :math:`R`), or else by one block product (``k`` products, reserved from the
       budget when it allows).

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
        multiplicity_check: Run step 2 where a cluster is suggested (``True``), always
            (``"always"``) or never (``False``).
        verify: Run step 3.
        basis_device: Where the Lanczos basis and the returned vectors live (default:
            the operator's device).
        keep_products: Keep the products next to the basis for step 3 (twice the
            basis memory, ``k`` products fewer); default: for ``k >= 2``.

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
        >>> pairs.multiplicity_checked   # equal values: the search ran, and found no more
        True
    """
    which = check_which(which)
    n = op.dim
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and dim={n}, got {k}")
    if multiplicity_check not in (True, False, "always"):
        raise ValueError(
            f"multiplicity_check must be True, False or 'always', got {multiplicity_check!r}"
        )
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
    solve = functools.partial(
        thick_restart_lanczos, op, which=which, tol=tol, basis_size=basis_size,
        generator=gen, basis_device=basis_device,
    )  # fmt: skip
    keep = bool(verify) and (k >= 2 if keep_products is None else keep_products)
    run = solve(start, k, max_matvecs=budget - reserve, keep_products=keep)
    products = run.products
    values, X, residuals = run.values.copy(), run.vectors, run.residuals.copy()
    restarts, scale = run.restarts, run.scale
    checked = run.exhausted
    search = multiplicity_check == "always" or (
        multiplicity_check is True
        and (run.invariant or suggests_cluster(values, run.next_value, tol, scale, op.dtype))
    )
    if search and k >= 2 and not run.exhausted and bool(run.converged.all()):
        while True:
            if k == n:
                checked = True
                break
            remaining = budget - reserve - meter.matvecs
            if remaining <= 0:
                break
            extra = solve(
                random_vector(n, gen, X), 1, max_matvecs=remaining, locked=X, scale_hint=scale
            )
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
            products = None  # the new vector's product was not kept
            values = merged[order]
            residuals = np.append(residuals, r_mu)[order]
    finite = bool(np.all(np.isfinite(values)))
    verified = finite and (products is not None or bool(reserve))
    spent = meter.matvecs
    if verified:
        AX = products if products is not None else op.matmat(X.to(op.device)).detach()
        AX = AX.to(X.device)
        theta_t = torch.from_numpy(values).to(X.device, op.dtype)
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
        next_value=run.next_value,
        verification_matvecs=meter.matvecs - spent,
    )
