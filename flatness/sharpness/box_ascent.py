r"""Maximizers of a function over a box, and the report they share.

Keskar et al.'s ε-sharpness (:mod:`flatness.sharpness.keskar`) maximizes the loss over a
box :math:`\{y : |y_i| \le b_i\}` with a fixed budget. The maximizers take the same
arguments — ``evaluate(y) -> (f, ∇f)``, a start ``y0`` inside the box, the half-widths
``bound`` and an iteration limit — and return an :class:`Ascent`:

* :func:`~flatness.sharpness.projected_lbfgs.projected_lbfgs_ascent` — projected L-BFGS on the
  device (its own module);
* :func:`scipy_lbfgsb_ascent` — scipy's L-BFGS-B (Byrd, Lu, Nocedal and Zhu 1995) in
  float64 on the host;
* :func:`sign_gradient_ascent` — projected sign-gradient ascent on the device.

Each keeps the best point it evaluated (a maximization may evaluate points worse than
its start) and reports the stationarity measure of L-BFGS-B at that point
(:func:`projected_gradient`) and the fraction of its coordinates at a face
(:func:`at_bound`).

References:
    R. H. Byrd, P. Lu, J. Nocedal and C. Zhu (1995). A limited memory algorithm for
    bound constrained optimization. SIAM J. Sci. Comput. 16(5), 1190–1208.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

__all__ = [
    "PGTOL",
    "Ascent",
    "AscentReport",
    "Evaluate",
    "at_bound",
    "projected_gradient",
    "scipy_lbfgsb_ascent",
    "sign_gradient_ascent",
]

PGTOL = 1e-5
"""Projected-gradient tolerance: scipy's L-BFGS-B default, used by every maximizer here."""

Evaluate = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``evaluate(y) -> (f(y), ∇f(y))``: a 0-d tensor and a vector like ``y``."""


@dataclass(frozen=True)
class AscentReport:
    """How a box maximizer ended and what it spent: the fields a result keeps.

    Attributes:
        success: The maximizer's convergence test passed.
        status: 0 converged, 1 iteration or evaluation limit, 2 abnormal stop.
        message: The maximizer's message.
        iterations: Iterations taken.
        evaluations: Evaluations of ``evaluate`` (each with its gradient).
        gradients: Gradients computed (equal to ``evaluations`` here).
        at_bound: Fraction of the coordinates of the best point at a face of the box.
        projected_gradient: :func:`projected_gradient` at the best point.
    """

    success: bool
    status: int
    message: str
    iterations: int
    evaluations: int
    gradients: int
    at_bound: float
    projected_gradient: float

    def report(self) -> dict[str, object]:
        """The report's fields by name.

        Returns:
            ``{field name: value}`` for the fields of :class:`AscentReport` only.
        """
        return {f.name: getattr(self, f.name) for f in fields(AscentReport)}


@dataclass(frozen=True)
class Ascent(AscentReport):
    """What a box maximizer found, with its :class:`AscentReport`.

    Attributes:
        value: The largest :math:`f` evaluated.
        point: Where (inside the box).
        gradient: :math:`\nabla f` there.
    """

    value: float
    point: Tensor
    gradient: Tensor


def projected_gradient(y: Tensor, g: Tensor, bound: Tensor) -> float:
    r""":math:`\max_i |P(y + g)_i - y_i|`, with :math:`P` the projection onto the box.

    L-BFGS-B's stationarity measure, for an ascent: 0 at a first-order maximum.

    Returns:
        The largest projected step (0 for an empty vector).

    Examples:
        >>> b = torch.ones(2)
        >>> projected_gradient(torch.tensor([1.0, 0.0]), torch.tensor([5.0, -0.5]), b)
        0.5
    """
    step = torch.minimum(torch.maximum(y + g, -bound), bound) - y
    return float(step.abs().max()) if step.numel() else 0.0


def at_bound(y: Tensor, bound: Tensor) -> float:
    """The fraction of the coordinates of ``y`` at a face of the box ``|y_i| <= bound_i``.

    Returns:
        A number in ``[0, 1]``.

    Examples:
        >>> at_bound(torch.tensor([1.0, 0.5, -1.0, 0.0]), torch.ones(4))
        0.5
    """
    return float((y.abs() >= bound * (1 - 1e-9)).to(torch.float64).mean())


def scipy_lbfgsb_ascent(evaluate: Evaluate, y0: Tensor, bound: Tensor, maxiter: int) -> Ascent:
    """Maximize with scipy's L-BFGS-B in float64 on the host; only vectors cross over.

    scipy's default tolerances (projected gradient ``<= 1e-5``, relative reduction
    ``<= 2.2e-9``) and memory (10 pairs). scipy's BLAS is held to one thread during the
    call, so that its idle OpenBLAS threads do not spin on the cores torch needs.

    Args:
        evaluate: The function and its gradient.
        y0: The start, inside the box.
        bound: The half-widths of the box.
        maxiter: The iteration limit.

    Returns:
        An :class:`Ascent` on the host in float64; ``status`` is scipy's.
    """
    best: dict[str, object] = {"f": -math.inf, "y": y0, "g": torch.zeros_like(y0)}

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = evaluate(torch.from_numpy(y))
        fv, gv = float(f), g.to(device="cpu", dtype=torch.float64).numpy()
        if fv > best["f"]:  # type: ignore[operator]
            best.update(f=fv, y=torch.from_numpy(y.copy()), g=torch.from_numpy(gv.copy()))
        return -fv, -gv

    b = bound.to(device="cpu", dtype=torch.float64).numpy()
    with threadpool_limits(limits=1, user_api="blas"):
        res = scipy.optimize.minimize(
            fun,
            y0.to(device="cpu", dtype=torch.float64).numpy(),
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(-b, b),
            options={"maxiter": maxiter},
        )
    message = res.message.decode() if isinstance(res.message, bytes) else str(res.message)
    bound64 = torch.from_numpy(b)
    y, g = best["y"], best["g"]
    assert isinstance(y, Tensor) and isinstance(g, Tensor)
    return Ascent(
        value=float(best["f"]),  # type: ignore[arg-type]
        point=y,
        gradient=g,
        success=bool(res.success),
        status=int(res.status),
        message=message,
        iterations=int(res.nit),
        evaluations=int(res.nfev),
        gradients=int(getattr(res, "njev", res.nfev)),
        at_bound=at_bound(y, bound64),
        projected_gradient=projected_gradient(y, g, bound64),
    )


def sign_gradient_ascent(evaluate: Evaluate, y0: Tensor, bound: Tensor, maxiter: int) -> Ascent:
    """Projected sign-gradient ascent in the box, on the device of ``y0``.

    Step ``k`` (of ``maxiter``) moves every coordinate by ``(1 - k / maxiter)`` times the
    half-width of the box in the direction of its partial derivative and clamps back
    into the box: the steepest ascent for the max-norm geometry of the box (as in
    projected-gradient adversarial attacks), with a step that shrinks linearly. The best
    point seen is kept without synchronizing with the host.

    Args:
        evaluate: The function and its gradient.
        y0: The start, inside the box.
        bound: The half-widths of the box.
        maxiter: The number of steps (``maxiter + 1`` evaluations).

    Returns:
        An :class:`Ascent`; ``success`` is L-BFGS-B's test (projected gradient
        ``<= 1e-5`` at the best point).
    """
    y = y0.clone()
    best_f = torch.full((), -math.inf, device=y.device, dtype=y.dtype)
    best_y, best_g = y.clone(), torch.zeros_like(y)
    for k in range(maxiter + 1):
        f, g = evaluate(y)
        better = f > best_f
        best_f = torch.where(better, f, best_f)
        best_y = torch.where(better, y, best_y)
        best_g = torch.where(better, g, best_g)
        if k == maxiter:
            break
        y = torch.clamp(y + (1 - k / maxiter) * bound * torch.sign(g), -bound, bound)
    pg = projected_gradient(best_y, best_g, bound)
    success = pg <= PGTOL
    return Ascent(
        value=float(best_f),
        point=best_y,
        gradient=best_g,
        success=success,
        status=0 if success else 1,
        message=(
            "projected gradient <= 1e-5 at the best point"
            if success
            else f"iteration limit reached ({maxiter} projected sign-gradient steps)"
        ),
        iterations=maxiter,
        evaluations=maxiter + 1,
        gradients=maxiter + 1,
        at_bound=at_bound(best_y, bound),
        projected_gradient=pg,
    )
