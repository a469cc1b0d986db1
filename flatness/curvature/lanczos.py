r"""The Lanczos process on symmetric operators: tridiagonalization and thick restart.

Everything here multiplies through the :class:`~flatness.curvature.operator.SymmetricOperator`
contract, in torch, on the operator's device and dtype; only the small projected
eigenproblems (at most ``basis_size`` rows) go to NumPy/SciPy on the host, in float64.

Two algorithms live here:

* :func:`lanczos_tridiagonal` — ``m`` steps of the Lanczos process (Lanczos 1950) with
  full reorthogonalization, giving :math:`A V_m = V_m T_m + \beta_m v_{m+1} e_m^\top`
  with :math:`T_m` tridiagonal. Stochastic Lanczos quadrature is built on it.
* :func:`thick_restart_lanczos` and its driver :func:`lanczos_eigenpairs` — k extremal
  eigenpairs by the thick-restart Lanczos method (Wu & Simon 2000), with a certified
  residual stopping rule and a deflated search for eigenvalues that a single Krylov
  sequence misses (repeated or tightly clustered ones).

References:
    C. Lanczos (1950). An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators. J. Res. Nat. Bur. Standards 45, 255–282.

    K. Wu and H. Simon (2000). Thick-restart Lanczos method for large symmetric
    eigenvalue problems. SIAM J. Matrix Anal. Appl. 22(2), 602–616.

    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §8.1 (residual
    bounds) and §10.1–10.3 (Lanczos, reorthogonalization). Johns Hopkins.

    J. W. Daniel, W. B. Gragg, L. Kaufman and G. W. Stewart (1976). Reorthogonalization
    and stable algorithms for updating the Gram–Schmidt QR factorization. Math. Comp.
    30, 772–795.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.operator import SymmetricOperator

Which = Literal["LA", "SA", "LM"]
WHICH: tuple[str, ...] = ("LA", "SA", "LM")

# A Gram–Schmidt sweep is repeated while it cancels more than this fraction of the norm
# (the DGKS criterion); two sweeps are always made, three at most.
_DGKS = 1.0 / math.sqrt(2.0)
# Residuals below ROUNDOFF_FACTOR * eps * ||A|| are at round-off level: an invariant
# subspace was found, and no relative tolerance can ask for less than that.
ROUNDOFF_FACTOR = 100.0


class Tridiagonalization(NamedTuple):
    r"""The output of :func:`lanczos_tridiagonal`.

    Attributes:
        alphas: The diagonal :math:`\alpha_1..\alpha_m` of :math:`T_m`, float64, shape ``(m,)``.
        betas: The off-diagonal :math:`\beta_1..\beta_{m-1}`, float64, shape ``(m-1,)``.
        basis: The orthonormal Lanczos vectors :math:`V_m`, shape ``(dim, m)``, on the
            operator's device and dtype.
        residual_norm: :math:`\beta_m = \lVert A v_m - \alpha_m v_m - \beta_{m-1} v_{m-1}\rVert`
            after reorthogonalization, the coupling to the next (not computed) vector.
        breakdown: Whether the Krylov subspace became invariant
            (:math:`\beta_m \approx 0`): then ``m`` may be smaller than the steps asked
            for, and the eigenvalues of :math:`T_m` are exact eigenvalues of ``A``.
    """

    alphas: np.ndarray
    betas: np.ndarray
    basis: Tensor
    residual_norm: float
    breakdown: bool


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


def check_which(which: str) -> Which:
    """Validate a ``which`` argument (``"LA"``, ``"SA"`` or ``"LM"``) and return it."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    return which  # type: ignore[return-value]


def order_by_which(values: np.ndarray, which: str) -> np.ndarray:
    """Indices that sort ``values`` most wanted first.

    ``"LA"``: descending; ``"SA"``: ascending; ``"LM"``: descending magnitude. The sort
    is stable, so ties keep their order.

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
    """
    eps = float(torch.finfo(dtype).eps)
    relative = tol * np.abs(np.asarray(values, dtype=np.float64))
    return np.maximum(relative, ROUNDOFF_FACTOR * eps * scale)


def _random_vector(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """A standard normal vector drawn on the CPU in float64 (device-independent)."""
    z = torch.randn(n, generator=generator, dtype=torch.float64)
    return z.to(device=like.device, dtype=like.dtype)


def _project_out(w: Tensor, basis: Tensor, locked: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Remove from ``w`` its components along ``locked`` and ``basis`` (orthonormal columns).

    Classical Gram–Schmidt, two sweeps, a third when the second still cancels most of
    the vector (DGKS). Returns the projected vector and its summed coefficients along
    ``basis`` (``basis^T w`` for the input ``w``).
    """
    coef = w.new_zeros(basis.shape[1])
    norm_before = torch.linalg.vector_norm(w)
    for sweep in range(3):
        if locked is not None and locked.shape[1] > 0:
            w = w - locked @ (locked.mT @ w)
        if basis.shape[1] > 0:
            c = basis.mT @ w
            w = w - basis @ c
            coef = coef + c
        norm_after = torch.linalg.vector_norm(w)
        if sweep >= 1 and bool(norm_after > _DGKS * norm_before):
            break
        norm_before = norm_after
    return w, coef


def _new_direction(
    n: int, generator: torch.Generator, basis: Tensor, locked: Tensor | None
) -> Tensor | None:
    """A random unit vector orthogonal to ``basis`` and ``locked``, or None if none exists."""
    for _ in range(3):
        w, _coef = _project_out(_random_vector(n, generator, basis), basis, locked)
        norm = float(torch.linalg.vector_norm(w))
        if norm > 1e-3:  # a standard normal vector has norm about sqrt(n - used) >= 1
            return w / norm
    return None


def lanczos_tridiagonal(
    op: SymmetricOperator, v0: Tensor, steps: int, *, reorthogonalize: bool = True
) -> Tridiagonalization:
    r"""Run ``steps`` Lanczos steps from ``v0``: :math:`A V_m = V_m T_m + \beta_m v_{m+1} e_m^\top`.

    The three-term recurrence (Lanczos 1950; Golub & Van Loan §10.1)

    .. math::
        \beta_j v_{j+1} = A v_j - \alpha_j v_j - \beta_{j-1} v_{j-1}, \qquad
        \alpha_j = v_j^\top A v_j,

    builds an orthonormal basis :math:`V_m` of the Krylov space
    :math:`\mathcal K_m(A, v_0)` in which :math:`V_m^\top A V_m = T_m` is tridiagonal.
    In floating point the :math:`v_j` lose orthogonality as Ritz values converge, which
    creates spurious copies of eigenvalues ("ghosts"); with ``reorthogonalize=True``
    each new vector is orthogonalized against all previous ones (classical Gram–Schmidt,
    twice, Golub & Van Loan §10.3.1), which keeps :math:`V_m` orthonormal to working
    precision at :math:`O(n m^2)` extra cost.

    The process stops early, honestly, at a breakdown: when :math:`\beta_j` falls to
    round-off level the Krylov space is invariant, :math:`T_j` has exact eigenvalues of
    ``A``, and no further direction exists in it. ``steps`` larger than ``op.dim`` are
    capped at ``op.dim``.

    Args:
        op: The symmetric operator.
        v0: The start vector, shape ``(dim,)`` (normalized here; must be nonzero).
        steps: The number of Lanczos steps (operator products), at least 1.
        reorthogonalize: Full reorthogonalization (recommended); without it only the
            three-term recurrence is used.

    Returns:
        A :class:`Tridiagonalization` with ``m <= steps`` steps.

    Raises:
        ValueError: If ``steps < 1``, ``v0`` has the wrong shape, or ``v0`` is zero.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
        >>> tri = lanczos_tridiagonal(A, torch.ones(3, dtype=torch.float64), steps=10)
        >>> len(tri.alphas), tri.breakdown   # three steps span the whole space
        (3, True)
        >>> T = np.diag(tri.alphas) + np.diag(tri.betas, 1) + np.diag(tri.betas, -1)
        >>> np.round(np.linalg.eigvalsh(T), 10).tolist()
        [1.0, 2.0, 3.0]
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    n = op.dim
    v = torch.as_tensor(v0).to(device=op.device, dtype=op.dtype)
    if v.shape != (n,):
        raise ValueError(f"v0 must have shape ({n},), got {tuple(v.shape)}")
    norm0 = float(torch.linalg.vector_norm(v))
    if not norm0 > 0 or not math.isfinite(norm0):
        raise ValueError("the start vector v0 must be nonzero and finite")
    steps = min(int(steps), n)
    eps = float(torch.finfo(op.dtype).eps)

    V = torch.empty(n, steps, device=op.device, dtype=op.dtype)
    V[:, 0] = v / norm0
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    scale = 0.0
    for j in range(steps):
        w = op.matvec(V[:, j]).detach()
        if reorthogonalize:
            w, coef = _project_out(w, V[:, : j + 1])
            alpha = float(coef[j])
        else:
            if j > 0:
                w = w - beta * V[:, j - 1]
            alpha = float(torch.dot(V[:, j], w))
            w = w - alpha * V[:, j]
        beta = float(torch.linalg.vector_norm(w))
        alphas.append(alpha)
        scale = max(scale, abs(alpha), beta)
        if beta <= ROUNDOFF_FACTOR * eps * scale or j == steps - 1:
            break
        betas.append(beta)
        V[:, j + 1] = w / beta
    m = len(alphas)
    breakdown = beta <= ROUNDOFF_FACTOR * eps * scale
    return Tridiagonalization(
        alphas=np.asarray(alphas, dtype=np.float64),
        betas=np.asarray(betas, dtype=np.float64),
        basis=V[:, :m],
        residual_norm=beta,
        breakdown=breakdown,
    )


def default_basis_size(k: int, dim: int) -> int:
    """The default thick-restart basis size, ``max(2k + 10, 20)`` capped at ``dim``."""
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
    which: str = "LA",
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
    start, _coef = _project_out(start, V[:, :0], locked)
    norm = float(torch.linalg.vector_norm(start))
    first = start / norm if norm > 0 and math.isfinite(norm) else None
    if first is None:
        first = _new_direction(n, gen, V[:, :0], locked)
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
        w, coef = _project_out(w, V[:, : s + 1], locked)
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
            following = _new_direction(n, gen, V[:, :s], locked)
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
    which: str = "LA",
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
       from ``generator``).
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
        v0: The start vector (default: drawn from ``generator``).
        multiplicity_check: Run step 2.
        verify: Run step 3.

    Returns:
        :class:`RitzPairs`; ``steps`` counts all products spent, verification included.

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
    counted_from = op.matvecs
    start = (
        torch.randn(n, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
        if v0 is None
        else v0
    )
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
            remaining = budget - reserve - (op.matvecs - counted_from)
            if remaining <= 0:
                break
            extra = thick_restart_lanczos(
                op, _random_vector(n, gen, X), 1, which=which, tol=tol,
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
        steps=op.matvecs - counted_from,
        restarts=restarts,
        exhausted=run.exhausted,
        scale=scale,
        multiplicity_checked=checked,
        verified=verified,
    )
