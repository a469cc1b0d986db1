r"""Extremal Hessian eigenvalues: thick-restart Lanczos, the front door.

:func:`hessian_eigenvalues` (thick-restart Lanczos) and
:func:`~flatness.curvature.power_iteration.power_iteration` (PyHessian-style, still
importable from here) take an :class:`~flatness.curvature.objective.Objective` (its
Hessian is used) or any :class:`~flatness.curvature.operator.SymmetricOperator`, and
return an :class:`~flatness.curvature.eigen_result.EigenResult` (importable from here
too) that carries its own evidence: residual norms :math:`\lVert A x - \theta x\rVert`
of every eigenpair, convergence flags decided on those residuals, the operator products
spent and the wall time.

References:
    C. Lanczos (1950). An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators. J. Res. Nat. Bur. Standards 45, 255–282.

    K. Wu and H. Simon (2000). Thick-restart Lanczos method for large symmetric
    eigenvalue problems. SIAM J. Matrix Anal. Appl. 22(2), 602–616.

    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §8.1, §8.2.1
    (power method), §10.1. Johns Hopkins.

    Z. Yao, A. Gholami, K. Keutzer and M. W. Mahoney (2020). PyHessian: Neural networks
    through the lens of the Hessian. IEEE Big Data.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from flatness.curvature.eigen_result import EigenResult
from flatness.curvature.graph_memory import default_memory_budget
from flatness.curvature.lanczos_basis import BasisPlan, plan_basis
from flatness.curvature.objective import Objective
from flatness.curvature.operator import (
    Target,
    hessian_gradient_equivalents,
    operator_choices,
    operator_for,
)
from flatness.curvature.options import HessianOptions, Which, check_which, resolve_hessian_options
from flatness.curvature.power_iteration import power_iteration
from flatness.curvature.thick_restart import lanczos_eigenpairs
from flatness.results import Meter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords

__all__ = ["EigenResult", "hessian_eigenvalues", "power_iteration"]


def hessian_eigenvalues(
    target: Target,
    *,
    k: int = 1,
    which: Which = "LA",
    tol: float = 1e-4,
    max_matvecs: int | None = None,
    basis_size: int | None = None,
    return_eigenvectors: bool = False,
    seed: int = 0,
    multiplicity_check: bool | Literal["always"] = True,
    verify: bool = True,
    v0: Tensor | EigenResult | None = None,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> EigenResult:
    r"""The ``k`` extremal eigenvalues of the Hessian (or of any symmetric operator).

    Thick-restart Lanczos (Lanczos 1950; Wu & Simon 2000) with full
    reorthogonalization, see :func:`~flatness.curvature.thick_restart.lanczos_eigenpairs`.
    It stops when every wanted Ritz pair :math:`(\theta_i, x_i)` has

    .. math::
        \lVert A x_i - \theta_i x_i \rVert \le \max\bigl(\mathrm{tol}\,|\theta_i|,\;
        100\,\varepsilon \lVert A\rVert\bigr),

    which certifies :math:`\theta_i` to relative accuracy ``tol`` because some
    eigenvalue :math:`\lambda` satisfies :math:`|\lambda - \theta_i| \le \lVert A x_i -
    \theta_i x_i\rVert` (Golub & Van Loan, Thm. 8.1.15); for well separated eigenvalues
    the error is much smaller, :math:`O(\lVert r\rVert^2/\mathrm{gap})`. When the budget
    runs out first, the values are returned flagged ``converged=False``.

    A warm start ``v0`` (the eigenvectors of a previous call, say at the previous step
    of a training run) starts the Krylov sequence near the wanted eigenvectors, so it
    converges in few products (:func:`~flatness.curvature.thick_restart.start_vector`).

    Args:
        target: A :class:`~flatness.curvature.objective.Objective` or a
            :class:`~flatness.curvature.operator.SymmetricOperator`.
        k: How many eigenvalues.
        which: ``"LA"`` (largest algebraic: the sharpest directions), ``"SA"`` (smallest
            algebraic: negative curvature) or ``"LM"`` (largest magnitude).
        tol: The relative residual tolerance.
        max_matvecs: The most Hessian-vector products to spend (default
            ``100 * basis_size``).
        basis_size: The Lanczos basis size before a restart (default ``2k + 10``,
            capped at the dimension and, for an Objective with an explicit
            ``memory_budget``, to half of it, see
            :mod:`~flatness.curvature.lanczos_basis`; the run is exact when the basis
            spans the whole space).
        return_eigenvectors: Keep the unit eigenvectors in the result.
        seed: Seed of the random start vector (drawn on the CPU in float64, so the same
            seed gives the same start on every device) and of the multiplicity check.
        multiplicity_check: For ``k >= 2``, search the complement of the converged
            eigenvectors for eigenvalues a single Krylov sequence misses (repeated or
            tightly clustered ones); it costs roughly one more single-eigenvalue run.
            ``True``: only where the values found suggest a cluster or the Krylov
            space became invariant (otherwise the result says
            ``multiplicity_checked=False``); ``"always"``: every time; ``False``: never.
        verify: Measure the final residuals: from the products the run kept (for
            ``k >= 2`` where the basis plan holds them), else with one block product
            (``k`` products).
        v0: A warm start instead of the random start vector: a vector of shape
            ``(dim,)``, a block ``(dim, m)`` of vectors (started from their sum), or a
            previous :class:`EigenResult` computed with ``return_eigenvectors=True``.
        hessian: How to multiply the Hessian when ``target`` is an Objective
            (:class:`~flatness.curvature.options.HessianOptions`); its
            ``memory_budget`` covers the Lanczos basis and the retained graphs, its
            ``basis_device`` says where the basis lives.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords
            (``strategy=...``); they raise a :class:`DeprecationWarning`.

    Returns:
        An :class:`EigenResult` with ``method="lanczos"``.

    Raises:
        ValueError: If ``which``, ``k``, ``tol``, ``max_matvecs`` or ``v0`` is invalid
            (``k`` above the dimension, an EigenResult without eigenvectors, a ``v0``
            of the wrong shape).
        TypeError: If ``target`` is neither an Objective nor an operator, or Hessian
            options come with an operator.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum(torch.linspace(-1.0, 5.0, 30, dtype=torch.float64))
        >>> res = hessian_eigenvalues(A, k=2, which="LA", tol=1e-8, return_eigenvectors=True)
        >>> [round(v, 6) for v in res.eigenvalues], res.all_converged
        ([5.0, 4.793103], True)
        >>> round(hessian_eigenvalues(A, which="SA", tol=1e-8).eigenvalues[0], 6)
        -1.0
        >>> warm = hessian_eigenvalues(A, k=2, tol=1e-8, v0=res)  # a warm start
        >>> warm.matvecs < res.matvecs
        True
    """
    hessian = resolve_hessian_options(hessian, legacy)
    which = check_which(which)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    start = _warm_start(v0)
    settings: dict[str, Any] = {
        "k": k,
        "which": which,
        "tol": tol,
        "max_matvecs": max_matvecs,
        "basis_size": basis_size,
        "return_eigenvectors": return_eigenvectors,
        "seed": seed,
        "multiplicity_check": multiplicity_check,
        "verify": verify,
        "v0": start,
        "hessian": hessian,
    }
    plan = _objective_basis(target, k, basis_size, hessian)
    options = hessian
    if plan is not None and plan.graph_budget is not None:
        options = dataclasses.replace(
            hessian or HessianOptions(), memory_budget=max(plan.graph_budget, 0)
        )
    with operator_for(target, options) as op, Meter(op) as meter:
        if k > op.dim:
            raise ValueError(f"k={k} exceeds the operator dimension {op.dim}")
        if plan is None:
            plan = plan_basis(
                k, op.dim, dtype=op.dtype, device=op.device, basis_device="operator",
                basis_size=basis_size,
            )  # fmt: skip
        pairs = lanczos_eigenpairs(
            op,
            k,
            which=which,
            tol=tol,
            basis_size=plan.size,
            max_matvecs=max_matvecs,
            generator=torch.Generator().manual_seed(seed),
            v0=start,
            multiplicity_check=multiplicity_check,
            verify=verify,
            basis_device=plan.device,
            keep_products=plan.products,
        )
    return EigenResult(
        eigenvalues=tuple(float(v) for v in pairs.values),
        residuals=tuple(float(r) for r in pairs.residuals),
        converged=tuple(bool(c) for c in pairs.converged),
        matvecs=meter.matvecs,
        seconds=meter.seconds,
        method="lanczos",
        which=which,
        tol=tol,
        k=k,
        seed=seed,
        dim=op.dim,
        iterations=meter.matvecs - pairs.verification_matvecs,
        restarts=pairs.restarts,
        multiplicity_checked=pairs.multiplicity_checked,
        eigenvectors=pairs.vectors.detach() if return_eigenvectors else None,
        gradient_equivalents=hessian_gradient_equivalents(op, meter.matvecs),
        choices={**operator_choices(op), "basis": plan.describe()},
        settings=settings,
    )


def _objective_basis(
    target: Target, k: int, basis_size: int | None, hessian: HessianOptions | None
) -> BasisPlan | None:
    """The basis plan of an Objective's run, made before its operator takes its budget.

    Returns:
        The :class:`~flatness.curvature.lanczos_basis.BasisPlan` for an Objective;
        ``None`` for an operator (planned once it is known, with no budget).
    """
    if not isinstance(target, Objective) or k > target.dim:
        return None
    options = hessian or HessianOptions()
    explicit = options.memory_budget is not None
    budget = options.memory_budget if explicit else default_memory_budget(target.device)
    return plan_basis(
        k, target.dim, dtype=target.dtype, device=target.device, budget=budget,
        basis_device=options.basis_device, basis_size=basis_size, cut=explicit,
    )  # fmt: skip


def _warm_start(v0: Tensor | EigenResult | None) -> Tensor | None:
    """The vector or block a warm start ``v0`` stands for (its eigenvectors for a result).

    Raises:
        ValueError: For an :class:`EigenResult` that holds no eigenvectors.
    """
    if isinstance(v0, EigenResult):
        if v0.eigenvectors is None:
            raise ValueError(
                "v0 is an EigenResult without eigenvectors; compute it with "
                "return_eigenvectors=True to warm-start from it"
            )
        return v0.eigenvectors
    return v0
