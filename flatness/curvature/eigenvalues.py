r"""Extremal Hessian eigenvalues: thick-restart Lanczos and (PyHessian-style) power iteration.

Both functions take an :class:`~flatness.curvature.objective.Objective` (its Hessian is
used) or any :class:`~flatness.curvature.operator.SymmetricOperator`, and return an
:class:`EigenResult` that carries its own evidence: residual norms
:math:`\lVert A x - \theta x\rVert` of every eigenpair, convergence flags decided on
those residuals, the operator products spent and the wall time.

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
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.operator import (
    SymmetricOperator,
    Target,
    hessian_gradient_equivalents,
    operator_for,
)
from flatness.curvature.options import HessianOptions, resolve_hessian_options
from flatness.curvature.thick_restart import (
    Which,
    check_which,
    lanczos_eigenpairs,
    order_by_which,
    residual_bounds,
)
from flatness.results import ErrorKind, Meter, Record, Result, format_float

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords

__all__ = ["EigenResult", "hessian_eigenvalues", "power_iteration"]


@dataclass(frozen=True, eq=False)
class EigenResult(Result):
    """Extremal eigenvalues with the evidence for them.

    Attributes:
        eigenvalues: The eigenvalues, ordered by ``which``: ``"LA"`` descending,
            ``"SA"`` ascending, ``"LM"`` by descending magnitude.
        residuals: The residual norms :math:`\\lVert A x_i - \\theta_i x_i \\rVert` of the
            unit eigenvectors; :math:`|\\lambda - \\theta_i|` is at most this for some
            eigenvalue :math:`\\lambda`.
        converged: Whether each residual meets the tolerance
            (:func:`~flatness.curvature.thick_restart.residual_bounds`). A value flagged
            False is an approximation without a certificate.
        matvecs: Operator (Hessian-vector) products spent in this call.
        seconds: Wall-clock seconds of this call.
        method: ``"lanczos"`` or ``"power"``.
        which: ``"LA"``, ``"SA"`` or ``"LM"``.
        tol: The relative residual tolerance.
        k: The number of eigenpairs asked for.
        seed: The seed of the random start vectors.
        dim: The operator's dimension.
        iterations: Operator products spent in iterations (Lanczos steps or power steps).
        restarts: Thick restarts (0 for power iteration).
        multiplicity_checked: Whether a deflated search confirmed that no eigenvalue
            belonging among the k was missed (repeated or clustered eigenvalues), or the
            whole space was spanned. False when not run (``k = 1``, power iteration,
            disabled, or the budget ran out).
        eigenvectors: Unit eigenvectors as columns, shape ``(dim, k)``, when asked for.
        gradient_equivalents: The cost in full gradients: ``COST_HVP * matvecs`` for
            the Hessian of a model, NaN for a plain operator
            (:func:`~flatness.curvature.operator.hessian_gradient_equivalents`).
        settings: The keyword arguments that reproduce the result with its function
            (:func:`hessian_eigenvalues` or :func:`power_iteration`). Left out of
            ``repr`` and :meth:`details` (the results store keeps them as the task's key).

    The result contract (:mod:`flatness.results`) reads ``value`` as the eigenvalues and
    ``stderr`` as the residual bounds (``error_kind = "residual"``).
    """

    error_kind: ClassVar[ErrorKind] = "residual"

    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    converged: tuple[bool, ...]
    matvecs: int
    seconds: float
    method: str
    which: str
    tol: float
    k: int
    seed: int
    dim: int
    iterations: int
    restarts: int = 0
    multiplicity_checked: bool = False
    eigenvectors: Tensor | None = field(default=None, repr=False)
    gradient_equivalents: float = math.nan
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def value(self) -> tuple[float, ...]:
        """The headline of the result contract: :attr:`eigenvalues`."""
        return self.eigenvalues

    @property
    def stderr(self) -> tuple[float, ...]:
        """The error bars of the result contract: :attr:`residuals`."""
        return self.residuals

    @property
    def evaluations(self) -> int:
        """Loss evaluations besides the products: none."""
        return 0

    @property
    def gradients(self) -> int:
        """Gradient evaluations besides the products: none."""
        return 0

    def records(self) -> list[Record]:
        """The store rows: one per eigenvalue, components ``"1"`` … ``"k"``.

        Returns:
            One :class:`~flatness.results.Record` per eigenvalue with its residual
            (``None`` where infinite: no Ritz value existed) and convergence flag; the
            error kind is ``"residual"`` on every row.
        """
        return [dataclasses.replace(r, error_kind=self.error_kind) for r in super().records()]

    @property
    def all_converged(self) -> bool:
        """Whether every eigenpair converged."""
        return all(self.converged)

    @property
    def relative_residuals(self) -> tuple[float, ...]:
        """``residual / |eigenvalue|`` per pair (``inf`` for a zero eigenvalue)."""
        return tuple(
            r / abs(v) if v != 0 else float("inf")
            for v, r in zip(self.eigenvalues, self.residuals, strict=True)
        )

    def __repr__(self) -> str:
        vals = ", ".join(format_float(v) for v in self.eigenvalues)
        res = ", ".join(format_float(r, 2) for r in self.residuals)
        return (
            f"EigenResult(method={self.method!r}, which={self.which!r}, k={self.k}, "
            f"eigenvalues=({vals}), residuals=({res}), "
            f"all_converged={self.all_converged}, matvecs={self.matvecs}, "
            f"seconds={format_float(self.seconds, 3)})"
        )

    def __str__(self) -> str:
        status = "all converged" if self.all_converged else "NOT all converged"
        lines = [
            f"EigenResult: {self.method}, which={self.which}, k={self.k}, {status} "
            f"(relative residual tol={self.tol:g})",
            f"  {'#':>3}  {'eigenvalue':>14}  {'residual':>10}  {'converged':>9}",
        ]
        for i, (v, r, c) in enumerate(
            zip(self.eigenvalues, self.residuals, self.converged, strict=True), start=1
        ):
            lines.append(f"  {i:>3}  {v:>14.8g}  {r:>10.2e}  {'yes' if c else 'NO':>9}")
        lines.append(
            f"  matvecs={self.matvecs}, seconds={self.seconds:.3g}, "
            f"iterations={self.iterations}, restarts={self.restarts}, seed={self.seed}"
        )
        return "\n".join(lines)


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
    multiplicity_check: bool = True,
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
        basis_size: The Lanczos basis size before a restart (default
            ``max(2k + 10, 20)``, capped at the dimension; the run is exact when the
            basis spans the whole space).
        return_eigenvectors: Keep the unit eigenvectors in the result.
        seed: Seed of the random start vector (drawn on the CPU in float64, so the same
            seed gives the same start on every device) and of the multiplicity check.
        multiplicity_check: For ``k >= 2``, search the complement of the converged
            eigenvectors for eigenvalues a single Krylov sequence misses (repeated or
            tightly clustered ones). Costs roughly one more single-eigenvalue run.
        verify: Measure the final residuals with one block product (``k`` products).
        v0: A warm start instead of the random start vector: a vector of shape
            ``(dim,)``, a block ``(dim, m)`` of vectors (started from their sum), or a
            previous :class:`EigenResult` computed with ``return_eigenvectors=True``.
        hessian: How to multiply the Hessian when ``target`` is an Objective
            (:class:`~flatness.curvature.options.HessianOptions`).
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
    with operator_for(target, hessian) as op, Meter(op) as meter:
        if k > op.dim:
            raise ValueError(f"k={k} exceeds the operator dimension {op.dim}")
        pairs = lanczos_eigenpairs(
            op,
            k,
            which=which,
            tol=tol,
            basis_size=basis_size,
            max_matvecs=max_matvecs,
            generator=torch.Generator().manual_seed(seed),
            v0=start,
            multiplicity_check=multiplicity_check,
            verify=verify,
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
        iterations=meter.matvecs - (k if pairs.verified else 0),
        restarts=pairs.restarts,
        multiplicity_checked=pairs.multiplicity_checked,
        eigenvectors=pairs.vectors.detach() if return_eigenvectors else None,
        gradient_equivalents=hessian_gradient_equivalents(op, meter.matvecs),
        settings=settings,
    )


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
