r"""ε-sharpness of Keskar et al. (ICLR 2017), Metric 2.1, in full space or a random subspace.

Keskar, Mudigere, Nocedal, Smelyanskiy and Tang measure how much the training loss
:math:`f` can rise in a small box around the parameters :math:`x \in \mathbb{R}^n`:

.. math::

    \phi_{x,f}(\varepsilon, A) = \frac{\max_{y \in \mathcal{C}_\varepsilon}
        f(x + A y) - f(x)}{1 + f(x)} \times 100,
    \qquad
    \mathcal{C}_\varepsilon = \bigl\{ z \in \mathbb{R}^p :
        |z_i| \le \varepsilon \bigl(|(A^{+} x)_i| + 1\bigr),\ i = 1, \dots, p \bigr\},

where :math:`A \in \mathbb{R}^{n \times p}` and :math:`A^{+}` is its pseudo-inverse.
With :math:`A = I_n` the box is taken in the full parameter space,
:math:`|y_i| \le \varepsilon(|x_i| + 1)`; the paper also reports a random
:math:`n \times 100` matrix, :math:`\varepsilon \in \{10^{-3}, 5 \cdot 10^{-4}\}`,
and solves the inner maximization approximately with L-BFGS-B limited to 10
iterations. Because the budget is fixed, :math:`\phi` is a lower bound on the true
box maximum that depends on the solver, its start and its budget, all of which are
recorded with the result.

Choices the paper leaves open, made here:

- The start of the ascent (``start``). At an exact minimum the gradient vanishes, so
  an ascent started at :math:`y = 0` cannot move; the default starts at a seeded
  uniform point of the box.
- How :math:`A` is drawn (:func:`random_subspace`): i.i.d. standard normal entries,
  the plain reading of "a random matrix". The scale matters, through the ``+1`` of the
  box: each of the :math:`p` directions may move by about :math:`\varepsilon\,\|a_j\|
  = \varepsilon\sqrt{n}`. On BatchNorm MLPs trained on MNIST-1D (146k parameters) this
  gives subspace values 0.085--0.15 of the full-space ones, within the range of the
  paper's Tables 3 and 4 (0.045--0.21); columns scaled to unit norm gave ratios of
  4e-5--2e-4 (``reports/keskar-subspace-scale.md``), a measure too small to tell
  minima apart. :math:`A^{+} x` is taken
  by least squares on the :math:`n \times p` matrix; no :math:`n \times n` matrix is
  formed.
- The maximum reported is the largest loss seen at any evaluated point of the box,
  including :math:`y = 0`, so :math:`\phi \ge 0`.

L-BFGS-B keeps scipy's default tolerances (projected gradient :math:`\le 10^{-5}`,
absolute; relative reduction of :math:`f` :math:`\le 2.2 \cdot 10^{-9}`). When the loss
varies less than that across the box (very flat directions, a tiny ε) it stops before
reaching the faces and :math:`\phi` is an underestimate; ``message``, ``at_bound`` and
``projected_gradient`` show it. The ``"pga"`` solver takes steps scaled to the box, not
to the gradient, and has no such stop.

Cost: scipy's L-BFGS-B wrapper handles the bounds element by element in Python, about
0.65 s per call for :math:`n = 146\,000` on a 2-core CPU whatever the model, and every
evaluation crosses to the host in float64; scipy's BLAS is held to one thread during the
call so that idle OpenBLAS threads do not spin on the cores torch needs. The ``"pga"``
solver never leaves the device and costs about one gradient per evaluation
(``reports/benchmark-curvature.md``, section "Sharpness measures").

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017, Section 2.2.2 (Metric 2.1).

    R. H. Byrd, P. Lu, J. Nocedal and C. Zhu (1995). A limited memory algorithm for
    bound constrained optimization. SIAM J. Sci. Comput. 16(5), 1190–1208.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias, get_args

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from flatness.curvature.objective import Objective
from flatness.results import Meter, format_float, gradient_equivalents
from flatness.sharpness.checks import require_deterministic
from flatness.sharpness.contract import NoErrorBar, SharpnessResult

__all__ = ["KESKAR_EPS", "KeskarResult", "Solver", "Start", "keskar_sharpness", "random_subspace"]

KESKAR_EPS = (1e-3, 5e-4)
"""The box sizes :math:`\\varepsilon` of Keskar et al. (2017), Tables 3 and 4."""

Solver: TypeAlias = Literal["lbfgsb", "pga"]
"""The inner maximizers: scipy's L-BFGS-B (the paper's) and projected sign-gradient ascent."""

Start: TypeAlias = Literal["random", "zero"]
"""Where the ascent starts: a seeded uniform point of the box, or :math:`y = 0`."""

SOLVERS: tuple[Solver, ...] = get_args(Solver)
STARTS: tuple[Start, ...] = get_args(Start)

PGTOL = 1e-5
"""Projected-gradient tolerance: scipy's L-BFGS-B default, also used to judge PGA."""

Evaluate = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True, eq=False)
class KeskarResult(NoErrorBar, SharpnessResult):
    """The ε-sharpness of one point with the evidence behind it.

    Besides the fields below it has the result contract's names: ``converged`` (an
    alias of ``success``), ``stderr`` (NaN: one deterministic ascent has no error bar),
    ``matvecs`` (0) and ``gradient_equivalents``.

    Attributes:
        value: :math:`\\phi`, the relative rise of the loss in percent.
        loss: :math:`f(x)`, the loss at the parameters.
        max_loss: The largest loss found in the box (at least ``loss``).
        eps: The box size :math:`\\varepsilon`.
        subspace_dim: :math:`p` for a random subspace, ``None`` for the full space.
        solver: ``"lbfgsb"`` or ``"pga"``.
        start: ``"random"`` or ``"zero"``.
        maxiter: The solver's iteration limit.
        seed: Seed of the subspace and of the random start.
        dim: :math:`n`, the number of parameters.
        success: The solver's own convergence test: scipy's ``success`` for L-BFGS-B
            (False when it stopped at ``maxiter``, which is normal with the paper's
            budget); for PGA, ``projected_gradient <= 1e-5`` (L-BFGS-B's test).
        status: scipy's status code for L-BFGS-B (0 converged, 1 iteration or
            evaluation limit, 2 abnormal); for PGA 0 if ``success`` else 1.
        message: The solver's message.
        iterations: Iterations the solver took.
        evaluations: Loss evaluations by the solver, each with its gradient; L-BFGS-B's
            line search may take several per iteration (one more forward pass, without
            gradient, gives :math:`f(x)`).
        gradients: Gradient evaluations by the solver.
        at_bound: Fraction of the coordinates of :math:`y` at a face of the box, at the
            best point the solver found.
        projected_gradient: :math:`\\max_i |P(y + g)_i - y_i|` at that point, with
            :math:`g = \\nabla_y f(x + Ay)` and :math:`P` the projection onto the box
            (L-BFGS-B's stationarity measure; 0 at a first-order maximum).
        seconds: Wall-clock seconds of the subspace, the ascent and :math:`f(x)` (the
            determinism check before them is not counted).
        subspace: How :math:`A` was drawn, ``None`` for the full space.
    """

    setting_fields: ClassVar[tuple[str, ...]] = (
        "eps",
        "subspace_dim",
        "solver",
        "maxiter",
        "start",
        "seed",
    )

    value: float
    loss: float
    max_loss: float
    eps: float
    subspace_dim: int | None
    solver: Solver
    start: Start
    maxiter: int
    seed: int
    dim: int
    success: bool
    status: int
    message: str
    iterations: int
    evaluations: int
    gradients: int
    at_bound: float
    projected_gradient: float
    seconds: float
    subspace: str | None = None

    @property
    def converged(self) -> bool:
        """The solver's convergence test: an alias of :attr:`success`."""
        return self.success

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients: the solver's gradients plus one forward for :math:`f(x)`."""
        return gradient_equivalents(evaluations=1, gradients=self.gradients)

    def __repr__(self) -> str:
        space = "full" if self.subspace_dim is None else f"p={self.subspace_dim}"
        return (
            f"KeskarResult(value={format_float(self.value)}, eps={self.eps:g}, {space}, "
            f"solver={self.solver!r}, start={self.start!r}, maxiter={self.maxiter}, "
            f"loss={format_float(self.loss)}, max_loss={format_float(self.max_loss)}, "
            f"at_bound={self.at_bound:.3g}, success={self.success}, "
            f"evaluations={self.evaluations}, seconds={format_float(self.seconds, 3)})"
        )


def _draw_subspace(
    dim: int, p: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype
) -> Tensor:
    rows = torch.empty(p, dim, device=device, dtype=dtype)
    for j in range(p):  # one column at a time: no n x p float64 copy on the host
        col = torch.randn(dim, generator=gen, dtype=torch.float64)
        rows[j] = col.to(device=device, dtype=dtype)
    return rows.T


def random_subspace(
    dim: int,
    subspace_dim: int,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The random :math:`n \\times p` matrix :math:`A` that :func:`keskar_sharpness` uses.

    Entries are i.i.d. :math:`\\mathcal{N}(0, 1)`, drawn column by column on the CPU
    in float64 from a generator seeded with ``seed`` (the same matrix on every device),
    then cast and moved. The result is the transpose of a contiguous :math:`p \\times n`
    tensor, so :math:`A^\\top g` reads contiguous rows.

    Args:
        dim: :math:`n`, the number of parameters.
        subspace_dim: :math:`p`, the number of random directions.
        seed: Seed of the draws.
        device: Where the matrix goes (default: the CPU).
        dtype: Its dtype.

    Returns:
        The :math:`n \\times p` matrix :math:`A`.

    Examples:
        >>> A = random_subspace(1000, 3, seed=0)
        >>> tuple(A.shape), bool(((A.T @ A).diag() / 1000 - 1).abs().max() < 0.2)
        ((1000, 3), True)
    """
    gen = torch.Generator().manual_seed(seed)
    return _draw_subspace(dim, subspace_dim, gen, torch.device(device or "cpu"), dtype)


def _projected_gradient(y: Tensor, g: Tensor, bound: Tensor) -> float:
    step = torch.minimum(torch.maximum(y + g, -bound), bound) - y
    return float(step.abs().max()) if step.numel() else 0.0


def _at_bound(y: Tensor, bound: Tensor) -> float:
    return float((y.abs() >= bound * (1 - 1e-9)).to(torch.float64).mean())


def _lbfgsb(evaluate: Evaluate, y0: Tensor, bound: Tensor, maxiter: int) -> dict[str, Any]:
    """Maximize with scipy's L-BFGS-B in float64 on the host; only vectors cross over."""
    best: dict[str, Any] = {"f": -math.inf, "y": y0, "g": torch.zeros_like(y0)}

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = evaluate(torch.from_numpy(y))
        fv, gv = float(f), g.to(device="cpu", dtype=torch.float64).numpy()
        if fv > best["f"]:
            best.update(f=fv, y=torch.from_numpy(y.copy()), g=torch.from_numpy(gv.copy()))
        return -fv, -gv

    b = bound.to(device="cpu", dtype=torch.float64).numpy()
    # One BLAS thread for scipy: its idle OpenBLAS threads would otherwise spin on the
    # cores that torch needs for the next loss evaluation.
    with threadpool_limits(limits=1, user_api="blas"):
        res = scipy.optimize.minimize(
            fun,
            y0.to(dtype=torch.float64).numpy(),
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(-b, b),
            options={"maxiter": maxiter},
        )
    message = res.message.decode() if isinstance(res.message, bytes) else str(res.message)
    bound64 = torch.from_numpy(b)
    return {
        **best,
        "success": bool(res.success),
        "status": int(res.status),
        "message": message,
        "iterations": int(res.nit),
        "evaluations": int(res.nfev),
        "gradients": int(getattr(res, "njev", res.nfev)),
        "at_bound": _at_bound(best["y"], bound64),
        "projected_gradient": _projected_gradient(best["y"], best["g"], bound64),
    }


def _pga(evaluate: Evaluate, y0: Tensor, bound: Tensor, maxiter: int) -> dict[str, Any]:
    """Projected sign-gradient ascent in the box, on the objective's device.

    Step ``k`` (of ``maxiter``) moves every coordinate by ``(1 - k / maxiter)`` times the
    half-width of the box in the direction of its partial derivative and clamps back
    into the box: the steepest ascent for the max-norm geometry of the box (as in
    projected-gradient adversarial attacks), with a step that shrinks linearly. The best
    point seen is kept without synchronizing with the host.
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
    pg = _projected_gradient(best_y, best_g, bound)
    success = pg <= PGTOL
    return {
        "f": float(best_f),
        "y": best_y,
        "g": best_g,
        "success": success,
        "status": 0 if success else 1,
        "message": (
            "projected gradient <= 1e-5 at the best point"
            if success
            else f"iteration limit reached ({maxiter} projected sign-gradient steps)"
        ),
        "iterations": maxiter,
        "evaluations": maxiter + 1,
        "gradients": maxiter + 1,
        "at_bound": _at_bound(best_y, bound),
        "projected_gradient": pg,
    }


def keskar_sharpness(
    obj: Objective,
    *,
    eps: float = 1e-3,
    subspace_dim: int | None = None,
    solver: Solver = "lbfgsb",
    maxiter: int = 10,
    start: Start = "random",
    seed: int = 0,
) -> KeskarResult:
    r"""Keskar et al.'s ε-sharpness :math:`\phi_{x,f}(\varepsilon, A)` (Metric 2.1).

    .. math::

        \phi_{x,f}(\varepsilon, A) = \frac{\max_{y \in \mathcal{C}_\varepsilon}
            f(x + A y) - f(x)}{1 + f(x)} \times 100,
        \quad |y_i| \le \varepsilon \bigl(|(A^{+} x)_i| + 1\bigr),

    with :math:`x` the objective's parameters :math:`\theta_0`, :math:`f` its loss,
    and :math:`A = I` (full space) or a random :math:`n \times p` matrix
    (:func:`random_subspace`). The gradient with respect to :math:`y` is
    :math:`A^\top \nabla f(x + Ay)`; each solver step costs one loss-and-gradient
    evaluation of the objective. The model is not modified.

    Args:
        obj: The objective; :math:`f` is its mean loss.
        eps: The box size :math:`\varepsilon` (the paper: :data:`KESKAR_EPS`).
        subspace_dim: :math:`p` for a random subspace (the paper: 100), or ``None``
            for the full space.
        solver: ``"lbfgsb"`` — scipy's L-BFGS-B (Byrd et al. 1995) in float64 on the
            host with the box as bounds, as in the paper (the loss and gradient are
            computed on the objective's device and dtype; only vectors cross) — or
            ``"pga"`` — projected sign-gradient ascent that never leaves the device,
            ``maxiter`` steps (``maxiter + 1`` evaluations).
        maxiter: The solver's iteration limit (the paper: 10).
        start: ``"random"`` — a seeded uniform point of the box (the default: at an
            exact minimum it is the start that can move) — or ``"zero"`` — :math:`y =
            0`, from which neither solver moves at a stationary point (:math:`\phi = 0`
            there).
        seed: Seed of :math:`A` and of the random start (drawn on the CPU in float64,
            :math:`A` first, so a seed gives the same numbers on every device).

    Returns:
        A :class:`KeskarResult`.

    Raises:
        ValueError: For a non-positive ``eps``, a ``subspace_dim`` outside
            ``1..obj.dim``, an unknown ``solver`` or ``start``, or ``maxiter < 1``.

    Examples:
        >>> net = torch.nn.Linear(3, 2).double()
        >>> X = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> obj = Objective(net, (X, (X[:, 0] > 0).long()))
        >>> res = keskar_sharpness(obj, eps=1e-3)
        >>> res.value > 0, res.solver, res.subspace_dim, res.evaluations <= 30
        (True, 'lbfgsb', None, True)
        >>> keskar_sharpness(obj, subspace_dim=4, solver="pga").value > 0
        True
    """
    if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps > 0):
        raise ValueError(
            f"eps must be a positive finite number (the paper uses {KESKAR_EPS}), got {eps!r}"
        )
    if subspace_dim is not None and not (
        isinstance(subspace_dim, numbers.Integral) and 1 <= subspace_dim <= obj.dim
    ):
        raise ValueError(
            f"subspace_dim must be None (full space) or an integer from 1 to the number of "
            f"parameters {obj.dim} (the paper uses 100), got {subspace_dim!r}"
        )
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if not (isinstance(maxiter, numbers.Integral) and maxiter >= 1):
        raise ValueError(f"maxiter must be a positive integer (the paper uses 10), got {maxiter!r}")
    subspace_dim = None if subspace_dim is None else int(subspace_dim)
    maxiter = int(maxiter)
    require_deterministic(obj, "keskar_sharpness")
    with Meter() as meter:
        out, loss, A = _ascend(obj, eps, subspace_dim, solver, maxiter, start, seed)
    max_loss = max(out["f"], loss)
    return KeskarResult(
        value=(max_loss - loss) / (1 + loss) * 100,
        loss=loss,
        max_loss=max_loss,
        eps=float(eps),
        subspace_dim=subspace_dim,
        solver=solver,
        start=start,
        maxiter=maxiter,
        seed=seed,
        dim=obj.dim,
        success=out["success"],
        status=out["status"],
        message=out["message"],
        iterations=out["iterations"],
        evaluations=out["evaluations"],
        gradients=out["gradients"],
        at_bound=out["at_bound"],
        projected_gradient=out["projected_gradient"],
        seconds=meter.seconds,
        subspace=None if A is None else "gaussian N(0, 1) entries",
    )


def _ascend(
    obj: Objective,
    eps: float,
    subspace_dim: int | None,
    solver: Solver,
    maxiter: int,
    start: Start,
    seed: int,
) -> tuple[dict[str, Any], float, Tensor | None]:
    """Maximize over the box: (the solver's report, :math:`f(x)`, :math:`A` or ``None``)."""
    device, dtype = obj.device, obj.dtype
    x = obj.theta0
    gen = torch.Generator().manual_seed(seed)
    A: Tensor | None = None
    if subspace_dim is None:
        center = x
    else:
        A = _draw_subspace(obj.dim, subspace_dim, gen, device, dtype)
        center = torch.linalg.lstsq(A, x.unsqueeze(1)).solution.squeeze(1)
    # the box stays on the host in float64 for L-BFGS-B, on the device for PGA
    work_device, work_dtype = (
        (torch.device("cpu"), torch.float64) if solver == "lbfgsb" else (device, dtype)
    )
    bound = (eps * (center.abs() + 1)).to(device=work_device, dtype=work_dtype)
    if start == "random":
        u = torch.rand(bound.shape, generator=gen, dtype=torch.float64)
        y0 = (2 * u - 1).to(device=work_device, dtype=work_dtype) * bound
    else:
        y0 = torch.zeros_like(bound)

    def evaluate(y: Tensor) -> tuple[Tensor, Tensor]:
        y = y.to(device=device, dtype=dtype)
        f, g = obj.value_and_gradient(x + (y if A is None else A @ y))
        return f, (g if A is None else A.T @ g)

    loss = float(obj.value())
    out = (_lbfgsb if solver == "lbfgsb" else _pga)(evaluate, y0, bound, maxiter)
    return out, loss, A
