r"""Power iteration with deflation, as PyHessian does it, with honest residuals.

The reference point for comparisons with PyHessian (Yao et al. 2020): the same
stopping rule, but the reported eigenvalue is the Rayleigh quotient of the final
vector with its measured residual, so a run that stopped on a mixture of two close
eigenvectors is flagged ``converged=False``.
:func:`~flatness.curvature.eigenvalues.hessian_eigenvalues` (thick-restart Lanczos) is
the better eigensolver; this one exists for parity.

References:
    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §8.2.1 (power
    method). Johns Hopkins.

    Z. Yao, A. Gholami, K. Keutzer and M. W. Mahoney (2020). PyHessian: Neural networks
    through the lens of the Hessian. IEEE Big Data.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.eigen_result import EigenResult
from flatness.curvature.operator import (
    SymmetricOperator,
    Target,
    hessian_gradient_equivalents,
    operator_choices,
    operator_for,
)
from flatness.curvature.options import HessianOptions, resolve_hessian_options
from flatness.curvature.thick_restart import order_by_which, residual_bounds
from flatness.results import Meter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords

__all__ = ["power_iteration"]


def _deflate(v: Tensor, found: list[Tensor]) -> Tensor:
    """Orthonormalize ``v`` against the unit vectors in ``found`` (Gram–Schmidt, as PyHessian)."""
    for u in found:
        v = v - torch.dot(u, v) * u
    norm = torch.linalg.vector_norm(v)
    return v / norm if bool(norm > 0) else v


def power_iteration(
    target: Target,
    *,
    k: int = 1,
    maxiter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    return_eigenvectors: bool = False,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> EigenResult:
    r"""Power iteration with deflation, stopping like PyHessian 0.1, reporting honestly.

    For each of ``k`` eigenpairs, a random unit vector is iterated (Golub & Van Loan
    §8.2.1) in the orthogonal complement of the eigenvectors already found,

    .. math::
        v \leftarrow P v / \lVert P v\rVert,\quad
        \rho = v^\top A v,\quad v \leftarrow A v / \lVert A v \rVert,
        \qquad P = I - \textstyle\sum_j u_j u_j^\top,

    and stops, exactly as PyHessian 0.1 does, when the Rayleigh quotient changes little,
    :math:`|\rho_{t-1} - \rho_t| / (|\rho_{t-1}| + 10^{-6}) < \mathrm{tol}`, or after
    ``maxiter`` products. The iteration converges to the eigenvalue of largest
    *magnitude* (``which="LM"``), slowly when :math:`|\lambda_2/\lambda_1|` is near 1.

    A small change of :math:`\rho` does not certify anything: with two close eigenvalues
    it stops early on a mixture of their eigenvectors. So the final unit vector
    :math:`u` (deflated, normalized) is multiplied once more, and the reported value is
    its Rayleigh quotient :math:`\theta = u^\top A u` with the measured residual
    :math:`\lVert A u - \theta u\rVert`; ``converged`` is decided on that residual with
    the same relative tolerance ``tol`` as :func:`hessian_eigenvalues`. (PyHessian
    returns the previous :math:`\rho` instead; the two differ by less than
    ``tol`` relative when the stopping rule fired.) Results are sorted by descending
    magnitude.

    Args:
        target: An Objective or a SymmetricOperator.
        k: How many eigenpairs (by deflation).
        maxiter: The most power steps per eigenpair.
        tol: The tolerance of PyHessian's stopping rule, and the relative residual
            tolerance of the ``converged`` flags.
        seed: Seed of the random start vectors (drawn on the CPU in float64).
        return_eigenvectors: Keep the unit eigenvectors in the result.
        hessian: How to multiply the Hessian when ``target`` is an Objective.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Returns:
        An :class:`EigenResult` with ``method="power"`` and ``which="LM"``; ``matvecs``
        counts the ``k`` residual products too.

    Raises:
        ValueError: If ``k``, ``maxiter`` or ``tol`` is out of range (``k`` above the
            dimension included).
        TypeError: If ``target`` is neither an Objective nor an operator, or Hessian
            options come with an operator.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum([10.0, 1.0, 0.5, 0.2, 0.1])
        >>> res = power_iteration(A, tol=1e-3)
        >>> round(res.eigenvalues[0], 6), res.all_converged
        (10.0, True)
        >>> res.matvecs   # 6 power steps + 1 residual product
        7
    """
    hessian = resolve_hessian_options(hessian, legacy)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if maxiter < 1:
        raise ValueError(f"maxiter must be at least 1, got {maxiter}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    settings: dict[str, Any] = {
        "k": k,
        "maxiter": maxiter,
        "tol": tol,
        "seed": seed,
        "return_eigenvectors": return_eigenvectors,
        "hessian": hessian,
    }
    with operator_for(target, hessian) as op, Meter(op) as meter:
        result = _power_iteration(op, k, maxiter, tol, seed, return_eigenvectors)
    return dataclasses.replace(
        result,
        matvecs=meter.matvecs,
        seconds=meter.seconds,
        gradient_equivalents=hessian_gradient_equivalents(op, meter.matvecs),
        choices=operator_choices(op),
        settings=settings,
    )


def _power_iteration(
    op: SymmetricOperator, k: int, maxiter: int, tol: float, seed: int, keep_vectors: bool
) -> EigenResult:
    """Power iteration with deflation; the caller fills in the cost and settings."""
    n = op.dim
    if k > n:
        raise ValueError(f"k={k} exceeds the operator dimension {n}")
    gen = torch.Generator().manual_seed(seed)
    found: list[Tensor] = []
    values: list[float] = []
    residuals: list[float] = []
    iterations = 0
    for _ in range(k):
        v = torch.randn(n, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
        v = v / torch.linalg.vector_norm(v)
        previous: float | None = None
        for _step in range(maxiter):
            v = _deflate(v, found)
            Av = op.matvec(v).detach()
            iterations += 1
            rho = float(torch.dot(Av, v))
            norm = torch.linalg.vector_norm(Av)
            if not bool(norm > 0):
                break  # v is in the null space: an exact zero eigenvalue
            v = Av / norm
            if previous is not None and abs(previous - rho) / (abs(previous) + 1e-6) < tol:
                break
            previous = rho
        u = _deflate(v, found)
        Au = op.matvec(u).detach()
        theta = float(torch.dot(Au, u))
        residuals.append(float(torch.linalg.vector_norm(Au - theta * u)))
        values.append(theta)
        found.append(u)
    order = order_by_which(np.asarray(values), "LM")
    vals = np.asarray(values)[order]
    res = np.asarray(residuals)[order]
    scale = float(np.abs(vals).max())
    converged = res <= residual_bounds(vals, tol, scale, op.dtype)
    vectors = torch.stack([found[i] for i in order], dim=1).detach() if keep_vectors else None
    return EigenResult(
        eigenvalues=tuple(float(x) for x in vals),
        residuals=tuple(float(r) for r in res),
        converged=tuple(bool(c) for c in converged),
        matvecs=iterations + k,
        seconds=0.0,
        method="power",
        which="LM",
        tol=tol,
        k=k,
        seed=seed,
        dim=n,
        iterations=iterations,
        eigenvectors=vectors,
    )
