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

The maximizer (``solver``, :mod:`flatness.sharpness.box_ascent`):

- ``"projected-lbfgs"`` (the default): projected L-BFGS on the objective's device and
  dtype (Kim, Sra and Dhillon 2010; :mod:`flatness.sharpness.projected_lbfgs`). Its
  first step goes to the vertex that maximizes the linear model, where L-BFGS-B's
  generalized Cauchy point goes in a box this small; later steps are quasi-Newton
  steps on the free coordinates. It spends at most ``maxiter + 1 + max(1, maxiter //
  3)`` gradients (14 for the paper's 10 iterations, so :math:`\le 14.3` gradient
  equivalents with :math:`f(x)`) and stops earlier at a first-order maximum. On the
  benchmark's networks (``reports/benchmark-sharpness.md``, full space) it reached
  1.000–1.003 times scipy's φ on MNIST-1D MLPs and far more on a random-init
  ResNet-18, at 2.8–11.3 measured gradient equivalents on the MLPs and 15.6 (13.3
  nominal, two backtracking steps) on the ResNet-18 with 32 images on a shared CPU,
  2–5.7 times faster than scipy. In a small random subspace each maximizer may stop
  at a different vertex that is a local maximum; neither dominates there.
- ``"lbfgsb"``: scipy's L-BFGS-B (Byrd et al. 1995), the paper's solver, in float64
  on the host, with scipy's default tolerances (projected gradient :math:`\le
  10^{-5}`, absolute; relative reduction of :math:`f` :math:`\le 2.2 \cdot 10^{-9}`).
  When the loss varies less than that across the box (very flat directions, a tiny ε,
  a loss near 0) it stops before reaching the faces and :math:`\phi` is an
  underestimate; ``message``, ``at_bound`` and ``projected_gradient`` show it. scipy
  handles the bounds element by element and every evaluation crosses to the host:
  15--29 gradient equivalents on MLPs, 62 on a ResNet-18 with 32 images. It was
  the default in version 0.1; a store scored then keeps its tasks under
  ``solver = "lbfgsb"``, which a manifest names to continue it.
- ``"pga"``: projected sign-gradient ascent with a shrinking step, on the device,
  ``maxiter + 1`` gradients, no stopping test.

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017, Section 2.2.2 (Metric 2.1).

    R. H. Byrd, P. Lu, J. Nocedal and C. Zhu (1995). A limited memory algorithm for
    bound constrained optimization. SIAM J. Sci. Comput. 16(5), 1190–1208.

    D. Kim, S. Sra and I. S. Dhillon (2010). Tackling box-constrained optimization via
    a new projected quasi-Newton approach. SIAM J. Sci. Comput. 32(6), 3548–3563.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from flatness.curvature.objective import Objective
from flatness.results import Meter, format_float, gradient_equivalents
from flatness.sharpness.box_ascent import (
    Ascent,
    AscentReport,
    scipy_lbfgsb_ascent,
    sign_gradient_ascent,
)
from flatness.sharpness.checks import require_deterministic
from flatness.sharpness.contract import NoErrorBar, SharpnessResult
from flatness.sharpness.projected_lbfgs import projected_lbfgs_ascent

__all__ = ["KESKAR_EPS", "KeskarResult", "Solver", "Start", "keskar_sharpness", "random_subspace"]

KESKAR_EPS = (1e-3, 5e-4)
"""The box sizes :math:`\\varepsilon` of Keskar et al. (2017), Tables 3 and 4."""

Solver: TypeAlias = Literal["projected-lbfgs", "lbfgsb", "pga"]
"""The inner maximizers: projected L-BFGS on the device (the default), scipy's L-BFGS-B
(the paper's) and projected sign-gradient ascent."""

Start: TypeAlias = Literal["random", "zero"]
"""Where the ascent starts: a seeded uniform point of the box, or :math:`y = 0`."""

SOLVERS: tuple[Solver, ...] = get_args(Solver)
STARTS: tuple[Start, ...] = get_args(Start)

_MAXIMIZERS = {
    "projected-lbfgs": projected_lbfgs_ascent,
    "lbfgsb": scipy_lbfgsb_ascent,
    "pga": sign_gradient_ascent,
}


@dataclass(frozen=True, eq=False)
class KeskarResult(NoErrorBar, SharpnessResult, AscentReport):
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
        solver: ``"projected-lbfgs"``, ``"lbfgsb"`` or ``"pga"``.
        start: ``"random"`` or ``"zero"``.
        maxiter: The solver's iteration limit.
        seed: Seed of the subspace and of the random start.
        dim: :math:`n`, the number of parameters.
        success: The solver's own convergence test: for projected L-BFGS, a first-order
            maximum or no gain left above rounding; scipy's ``success`` for L-BFGS-B
            (False when it stopped at ``maxiter``, which is normal with the paper's
            budget); for PGA, ``projected_gradient <= 1e-5`` (L-BFGS-B's test).
        status: 0 converged, 1 iteration or evaluation limit, 2 abnormal (scipy's code
            for L-BFGS-B; a non-finite loss for projected L-BFGS); for PGA 0 if
            ``success`` else 1.
        message: The solver's message.
        iterations: Iterations the solver took.
        evaluations: Loss evaluations by the solver, each with its gradient; the line
            searches may take several per iteration (one more forward pass, without
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


def keskar_sharpness(
    obj: Objective,
    *,
    eps: float = 1e-3,
    subspace_dim: int | None = None,
    solver: Solver = "projected-lbfgs",
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
        solver: ``"projected-lbfgs"`` — projected L-BFGS on the objective's device and
            dtype, at most ``maxiter + 1 + max(1, maxiter // 3)`` evaluations
            (:func:`~flatness.sharpness.projected_lbfgs.projected_lbfgs_ascent`) — or
            ``"lbfgsb"`` — scipy's L-BFGS-B (Byrd et al. 1995) in float64 on the host
            with the box as bounds, as in the paper (the loss and gradient are computed
            on the objective's device and dtype; only vectors cross) — or ``"pga"`` —
            projected sign-gradient ascent that never leaves the device, ``maxiter``
            steps (``maxiter + 1`` evaluations).
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
        >>> res.value > 0, res.solver, res.subspace_dim, res.gradient_equivalents <= 15
        (True, 'projected-lbfgs', None, True)
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
    max_loss = max(out.value, loss)
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
        seconds=meter.seconds,
        **out.report(),  # type: ignore[arg-type]
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
) -> tuple[Ascent, float, Tensor | None]:
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
    # the box stays on the host in float64 for scipy's L-BFGS-B, on the device otherwise
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
    out = _MAXIMIZERS[solver](evaluate, y0, bound, maxiter)
    return out, loss, A
