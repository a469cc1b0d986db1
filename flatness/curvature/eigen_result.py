r"""The result of an extremal-eigenvalue call: eigenvalues with the evidence for them.

:class:`EigenResult` is what :func:`~flatness.curvature.eigenvalues.hessian_eigenvalues`
(thick-restart Lanczos) and :func:`~flatness.curvature.power_iteration.power_iteration`
return: residual norms :math:`\lVert A x - \theta x\rVert` of every eigenpair,
convergence flags decided on those residuals, the operator products spent and the wall
time. Both solvers import it from here, so neither needs the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from torch import Tensor

from flatness.curvature.options import Which
from flatness.results import ErrorKind, Result, format_float

__all__ = ["EigenResult"]


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
        seconds: Wall-clock seconds of the solver, after the operator was built.
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
            disabled, the budget ran out, or, with ``multiplicity_check=True``, no
            cluster among the values found and no invariant Krylov space suggested one:
            the values are certified, their completeness is not).
        eigenvectors: Unit eigenvectors as columns, shape ``(dim, k)``, when asked for.
        evaluations: Loss evaluations besides the products (none).
        gradients: Gradient evaluations besides the products (none).
        gradient_equivalents: The cost in full gradients: ``COST_HVP * matvecs`` for
            the Hessian of a model, NaN for a plain operator
            (:func:`~flatness.curvature.operator.hessian_gradient_equivalents`).
        choices: The choices of the Hessian operator that change the last bits
            (:attr:`~flatness.curvature.hessian.HessianOperator.numerics`: strategy,
            retained batches, fallback, vectorized blocks, threads, ``deterministic``); empty for
            an operator that makes none (a plain matrix). Kept in :meth:`details`.
        settings: The keyword arguments that reproduce the result with its function
            (:func:`hessian_eigenvalues` or :func:`power_iteration`). Left out of
            ``repr`` and :meth:`details` (the results store keeps them as the task's key).

    The result contract (:mod:`flatness.results`) reads ``value`` as the eigenvalues and
    ``stderr`` as the residual bounds (``error_kind = "residual"``). Its store rows are
    one per eigenvalue, components ``"1"`` … ``"k"``, with the residual (``None`` where
    infinite: no Ritz value existed), the error kind ``"residual"`` on every row and
    the convergence flag.
    """

    error_kind: ClassVar[ErrorKind] = "residual"
    error_kind_on_every_row: ClassVar[bool] = True

    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    converged: tuple[bool, ...]
    matvecs: int
    seconds: float
    method: Literal["lanczos", "power"]
    which: Which
    tol: float
    k: int
    seed: int
    dim: int
    iterations: int
    restarts: int = 0
    multiplicity_checked: bool = False
    eigenvectors: Tensor | None = field(default=None, repr=False)
    evaluations: int = 0
    gradients: int = 0
    gradient_equivalents: float = math.nan
    choices: dict[str, Any] = field(default_factory=dict)
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
