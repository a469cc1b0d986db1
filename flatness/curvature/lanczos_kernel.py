r"""The Lanczos kernel on symmetric operators: the three-term recurrence.

Everything here multiplies through the :class:`~flatness.curvature.operator.SymmetricOperator`
contract, in torch, on the operator's device and dtype.

:func:`lanczos_tridiagonal` runs ``m`` steps of the Lanczos process (Lanczos 1950) with
full reorthogonalization, giving :math:`A V_m = V_m T_m + \beta_m v_{m+1} e_m^\top`
with :math:`T_m` tridiagonal; stochastic Lanczos quadrature
(:mod:`flatness.curvature.density`) is built on it. The Gram–Schmidt helpers
(:func:`project_out`, :func:`new_direction`) and the warm start
(:func:`start_vector`) are shared with the thick-restart
eigensolver in :mod:`flatness.curvature.thick_restart`, which imports them from here.
:mod:`flatness.curvature.lanczos` keeps the names of both importable from their old
path.

References:
    C. Lanczos (1950). An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators. J. Res. Nat. Bur. Standards 45, 255–282.

    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §10.1–10.3
    (Lanczos, reorthogonalization). Johns Hopkins.

    J. W. Daniel, W. B. Gragg, L. Kaufman and G. W. Stewart (1976). Reorthogonalization
    and stable algorithms for updating the Gram–Schmidt QR factorization. Math. Comp.
    30, 772–795.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.linear_operator import SymmetricOperator

__all__ = [
    "ROUNDOFF_FACTOR",
    "Tridiagonalization",
    "lanczos_tridiagonal",
    "new_direction",
    "project_out",
    "random_vector",
    "reorthogonalize",
    "start_vector",
]


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


def random_vector(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """A standard normal vector drawn on the CPU in float64 (device-independent).

    Returns:
        A vector of length ``n`` on ``like``'s device and dtype; the same generator
        state gives the same vector on every device.
    """
    z = torch.randn(n, generator=generator, dtype=torch.float64)
    return z.to(device=like.device, dtype=like.dtype)


def project_out(w: Tensor, basis: Tensor, locked: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Remove from ``w`` its components along ``locked`` and ``basis`` (orthonormal columns).

    Classical Gram–Schmidt, two sweeps, a third when the second still cancels most of
    the vector (Daniel, Gragg, Kaufman & Stewart 1976).

    Returns:
        The projected vector and its summed coefficients along ``basis``
        (``basis^T w`` for the input ``w``).
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


def reorthogonalize(
    w: Tensor,
    basis: Tensor,
    known: Tensor,
    locked: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Orthogonalize a Lanczos product :math:`w = A v_s` against the basis, one sweep.

    The coupling of :math:`v_s` to the earlier vectors is known from the recurrence:
    :math:`\beta_{s-1}` to :math:`v_{s-1}` in a plain Lanczos step, the arrow
    :math:`\beta_m s_{m,i}` to the kept Ritz vectors after a thick restart. Those
    components are subtracted first, then :math:`\alpha_s = v_s^\top w` (the local
    three-term step of Lanczos 1950), and the round-off left along the whole basis is
    removed by one classical Gram–Schmidt sweep, a single matrix product each way
    (:math:`c = V^\top w`, :math:`w \leftarrow w - V c`; Golub & Van Loan §10.3.1). A
    second sweep is made only where the first cancels most of the vector (the DGKS
    criterion of Daniel, Gragg, Kaufman & Stewart 1976), near an invariant subspace.

    Args:
        w: The product :math:`A v_s`, shape ``(dim,)``.
        basis: The orthonormal columns :math:`v_0 .. v_s`, shape ``(dim, s + 1)``; the
            last one is the vector that was multiplied.
        known: The known coupling of :math:`v_s` to ``basis[:, s - p : s]``, shape
            ``(p,)``: :math:`(\beta_{s-1})` in a plain step, the arrow after a restart
            (then ``p = s``, the kept vectors), empty after a random new direction.
        locked: Orthonormal vectors ``(dim, q)`` to project out as well.

    Returns:
        The orthogonalized vector and its coefficients along ``basis``, length
        ``s + 1`` (column ``s`` of :math:`T = V^\top A V`).
    """
    s = basis.shape[1] - 1
    coef = w.new_zeros(s + 1)
    p = int(known.shape[0])
    if p:
        w = w - basis[:, s - p : s] @ known
        coef[s - p : s] = known
    alpha = basis[:, s] @ w
    w = w - alpha * basis[:, s]
    coef[s] = coef[s] + alpha
    for _sweep in range(2):
        norm_before = torch.linalg.vector_norm(w)
        if locked is not None and locked.shape[1] > 0:
            w = w - locked @ (locked.mT @ w)
        c = basis.mT @ w
        w = w - basis @ c
        coef = coef + c
        if bool(torch.linalg.vector_norm(w) > _DGKS * norm_before):
            break
    return w, coef


def new_direction(
    n: int, generator: torch.Generator, basis: Tensor, locked: Tensor | None
) -> Tensor | None:
    """A random unit vector orthogonal to ``basis`` and ``locked``.

    Returns:
        The vector, or ``None`` when three random draws found no room (the two span
        the whole space).
    """
    for _ in range(3):
        w, _coef = project_out(random_vector(n, generator, basis), basis, locked)
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
            w, coef = project_out(w, V[:, : j + 1])
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


def start_vector(v0: Tensor, op: SymmetricOperator) -> Tensor:
    r"""The Lanczos start vector of a warm start: ``v0`` itself, or a block's column sum.

    A block :math:`X = [x_1 \dots x_m]` of (approximate) eigenvectors, such as the Ritz
    vectors of a previous call, starts from :math:`v = \sum_j x_j`. When the
    :math:`x_j` are eigenvectors of distinct eigenvalues, the Krylov space
    :math:`\mathcal K_m(A, v)` is exactly their span (:math:`A^i v = \sum_j
    \lambda_j^i x_j`, a Vandermonde system), so ``m`` Lanczos steps recover them all;
    for nearby vectors it is close to that span, and the run converges in few steps.

    Args:
        v0: A vector of shape ``(dim,)`` or a block of shape ``(dim, m)``.
        op: The operator (for its dimension, device and dtype).

    Returns:
        A vector of shape ``(dim,)`` on the operator's device and dtype.

    Raises:
        ValueError: If ``v0`` has another shape, or is zero or not finite.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator(torch.eye(3, dtype=torch.float64))
        >>> start_vector(torch.eye(3, dtype=torch.float64)[:, :2], A).tolist()
        [1.0, 1.0, 0.0]
    """
    v = torch.as_tensor(v0).detach().to(device=op.device, dtype=op.dtype)
    if v.ndim == 2 and v.shape[0] == op.dim and v.shape[1] >= 1:
        v = v.sum(dim=1)
    if v.shape != (op.dim,):
        raise ValueError(f"v0 must have shape ({op.dim},) or ({op.dim}, m), got {tuple(v0.shape)}")
    norm = float(torch.linalg.vector_norm(v))
    if not norm > 0 or not math.isfinite(norm):
        raise ValueError("the start vector v0 must be nonzero and finite")
    return v
