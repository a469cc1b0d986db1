r"""Keskar's subspace ε-sharpness over several random subspaces, with its spread.

Keskar et al. (ICLR 2017, Table 4) measure ε-sharpness in *one* random
:math:`n \times 100` subspace :math:`A` (:func:`~flatness.sharpness.keskar.keskar_sharpness`
with ``subspace_dim``). The value depends on the draw of :math:`A`: one draw says
nothing about how much. :func:`keskar_subspace_draws` maximizes in ``draws``
independent subspaces and returns their mean with the standard error
:math:`s/\sqrt{d}` (``s`` the sample standard deviation over the :math:`d` draws);
every draw is kept as a row of its own in the results store (components ``"draw1"`` …).

Draw :math:`j = 0` uses the task's ``seed`` itself, so its value is the single-draw
result of the same seed; draw :math:`j \ge 1` uses the seed
``numpy.random.SeedSequence([seed, j]).generate_state(1)[0]`` (independent streams
for every pair of seed and draw, no overlap between the draws of neighbouring seeds).
Each seed draws its subspace and then its random start, as a single draw does.

:func:`keskar_measure` is what the pipeline's ``keskar`` measure calls: one draw (the
default, and always in full space, where there is no subspace to draw) is
:func:`~flatness.sharpness.keskar.keskar_sharpness`'s result unchanged, so the tasks
and rows of stores scored before ``draws`` existed stay as they were
(:func:`keskar_task_key` leaves ``draws`` out of such tasks' settings).

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017, Section 2.2.2 (Metric 2.1) and Table 4.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from flatness.curvature.objective import Objective
from flatness.results import Meter, Record, format_float, gradient_equivalents
from flatness.sharpness.contract import SharpnessResult
from flatness.sharpness.keskar import KeskarResult, Solver, Start, keskar_sharpness

__all__ = [
    "KeskarDrawsResult",
    "draw_seed",
    "keskar_measure",
    "keskar_subspace_draws",
    "keskar_task_key",
]


def draw_seed(seed: int, draw: int) -> int:
    """The seed of the ``draw``-th random subspace of a task seeded with ``seed``.

    Returns:
        ``seed`` for draw 0; for later draws a 32-bit seed from
        ``numpy.random.SeedSequence([seed, draw])``.

    Examples:
        >>> draw_seed(7, 0), draw_seed(7, 1) == draw_seed(7, 1), draw_seed(7, 1) != draw_seed(8, 1)
        (7, True, True)
    """
    if draw == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(draw)]).generate_state(1)[0])


@dataclass(frozen=True, eq=False)
class KeskarDrawsResult(SharpnessResult):
    """ε-sharpness in several random subspaces: their mean, its standard error, each draw.

    Besides the fields below it has the result contract's names: ``converged`` (every
    draw's solver test passed), ``matvecs`` (0), ``evaluations`` and ``gradients``
    (summed over the draws), ``gradient_equivalents`` and ``settings``.

    Attributes:
        value: The mean of :math:`\\phi` over the draws.
        stderr: The sample standard deviation over the draws divided by
            :math:`\\sqrt{d}`.
        values: :math:`\\phi` of each draw, in order.
        seeds: The seed of each draw (:func:`draw_seed`).
        spread: The sample standard deviation over the draws.
        loss: :math:`f(x)`, the loss at the parameters.
        eps: The box size :math:`\\varepsilon`.
        subspace_dim: :math:`p`.
        solver: The maximizer.
        start: The start of each ascent.
        maxiter: The solver's iteration limit.
        seed: The task's seed (draw 0's).
        draws: The number of subspaces :math:`d`.
        dim: :math:`n`, the number of parameters.
        evaluations: Loss evaluations of all draws.
        gradients: Gradient evaluations of all draws.
        successes: How many draws' solvers passed their own convergence test.
        seconds: Wall-clock seconds of all draws.
    """

    setting_fields: ClassVar[tuple[str, ...]] = (
        "eps",
        "subspace_dim",
        "solver",
        "maxiter",
        "start",
        "seed",
        "draws",
    )

    value: float
    stderr: float
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    spread: float
    loss: float
    eps: float
    subspace_dim: int
    solver: Solver
    start: Start
    maxiter: int
    seed: int
    draws: int
    dim: int
    evaluations: int
    gradients: int
    successes: int
    seconds: float

    @property
    def converged(self) -> bool:
        """Whether every draw's solver passed its own convergence test."""
        return self.successes == self.draws

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients: each draw's gradients and its forward for :math:`f(x)`."""
        return gradient_equivalents(evaluations=self.draws, gradients=self.gradients)

    def records(self) -> list[Record]:
        """The store's rows: the mean with its standard error (``""``), then each draw.

        Returns:
            ``Record("", mean, stderr, "stderr")`` and ``Record("draw<j>", φ_j)`` for
            ``j = 1 … draws``; no convergence flags (see
            :mod:`flatness.sharpness.contract`).
        """
        error = self.stderr if math.isfinite(self.stderr) else None
        head = Record("", self.value, error, "stderr" if error is not None else None)
        return [head, *(Record(f"draw{j + 1}", v) for j, v in enumerate(self.values))]

    def __repr__(self) -> str:
        return (
            f"KeskarDrawsResult(value={format_float(self.value)} ± "
            f"{format_float(self.stderr)}, draws={self.draws}, p={self.subspace_dim}, "
            f"eps={self.eps:g}, values={[format_float(v) for v in self.values]})"
        )


def keskar_subspace_draws(
    obj: Objective,
    *,
    eps: float = 1e-3,
    subspace_dim: int = 100,
    draws: int = 3,
    solver: Solver = "projected-lbfgs",
    maxiter: int = 10,
    start: Start = "random",
    seed: int = 0,
) -> KeskarDrawsResult:
    """Keskar's ε-sharpness in ``draws`` independent random subspaces.

    Each draw is :func:`~flatness.sharpness.keskar.keskar_sharpness` with
    ``subspace_dim`` and the seed :func:`draw_seed` gives it; the result is their mean
    with the standard error over the draws.

    Args:
        obj: The objective; :math:`f` is its mean loss.
        eps: The box size :math:`\\varepsilon`.
        subspace_dim: :math:`p` (the paper: 100).
        draws: How many subspaces (at least 2: one draw has no spread; use
            :func:`~flatness.sharpness.keskar.keskar_sharpness` for one).
        solver: The maximizer (see :func:`~flatness.sharpness.keskar.keskar_sharpness`).
        maxiter: Its iteration limit (the paper: 10).
        start: ``"random"`` or ``"zero"``.
        seed: The seed of draw 0; the others are derived from it.

    Returns:
        A :class:`KeskarDrawsResult`.

    Raises:
        ValueError: For ``draws`` below 2, or a setting
            :func:`~flatness.sharpness.keskar.keskar_sharpness` refuses.

    Examples:
        >>> import torch
        >>> net = torch.nn.Linear(5, 2).double()
        >>> X = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> obj = Objective(net, (X, (X[:, 0] > 0).long()))
        >>> res = keskar_subspace_draws(obj, subspace_dim=3, draws=3, solver="pga")
        >>> len(res.values), res.values[0] == keskar_sharpness(
        ...     obj, subspace_dim=3, solver="pga").value
        (3, True)
    """
    if not (isinstance(draws, numbers.Integral) and draws >= 2):
        raise ValueError(
            f"draws must be an integer of at least 2 (one draw has no spread; "
            f"keskar_sharpness takes one), got {draws!r}"
        )
    with Meter() as meter:
        results: list[KeskarResult] = [
            keskar_sharpness(
                obj,
                eps=eps,
                subspace_dim=subspace_dim,
                solver=solver,
                maxiter=maxiter,
                start=start,
                seed=draw_seed(seed, j),
            )
            for j in range(int(draws))
        ]
    values = tuple(float(r.value) for r in results)
    spread = float(np.std(values, ddof=1))
    return KeskarDrawsResult(
        value=float(np.mean(values)),
        stderr=spread / math.sqrt(len(values)),
        values=values,
        seeds=tuple(int(r.seed) for r in results),
        spread=spread,
        loss=results[0].loss,
        eps=float(eps),
        subspace_dim=int(subspace_dim),
        solver=solver,
        start=start,
        maxiter=int(maxiter),
        seed=int(seed),
        draws=int(draws),
        dim=obj.dim,
        evaluations=sum(r.evaluations for r in results),
        gradients=sum(r.gradients for r in results),
        successes=sum(bool(r.success) for r in results),
        seconds=meter.seconds,
    )


def keskar_measure(
    obj: Objective,
    *,
    eps: float = 1e-3,
    subspace_dim: int | None = None,
    solver: Solver = "projected-lbfgs",
    maxiter: int = 10,
    start: Start = "random",
    seed: int = 0,
    draws: int = 1,
) -> KeskarResult | KeskarDrawsResult:
    """The pipeline's ``keskar`` measure: one ascent, or several subspaces' mean.

    Args:
        obj: The objective.
        eps: The box size.
        subspace_dim: :math:`p`, or ``None`` for the full space.
        solver: The maximizer.
        maxiter: Its iteration limit.
        start: ``"random"`` or ``"zero"``.
        seed: The seed (of draw 0).
        draws: How many random subspaces; 1 (the default) and the full space give
            :func:`~flatness.sharpness.keskar.keskar_sharpness`'s result.

    Returns:
        A :class:`~flatness.sharpness.keskar.KeskarResult` for one draw or the full
        space, else a :class:`KeskarDrawsResult`.

    Raises:
        ValueError: For ``draws`` below 1, or another setting the estimators refuse.
    """
    if not (isinstance(draws, numbers.Integral) and draws >= 1):
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    common: dict[str, Any] = {
        "eps": eps,
        "solver": solver,
        "maxiter": maxiter,
        "start": start,
        "seed": seed,
    }
    if subspace_dim is None or draws == 1:
        return keskar_sharpness(obj, subspace_dim=subspace_dim, **common)
    return keskar_subspace_draws(obj, subspace_dim=subspace_dim, draws=draws, **common)


def keskar_task_key(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A ``keskar`` task's settings as its store key keeps them.

    ``draws`` is left out where it changes nothing — one draw, or the full space
    (``subspace`` 0) — so such tasks keep the keys they had before ``draws`` existed.

    Returns:
        The settings, without ``draws`` for those tasks.

    Examples:
        >>> keskar_task_key({"eps": 1e-3, "subspace": 0, "draws": 3})
        {'eps': 0.001, 'subspace': 0}
        >>> keskar_task_key({"eps": 1e-3, "subspace": 100, "draws": 3})
        {'eps': 0.001, 'subspace': 100, 'draws': 3}
    """
    out = dict(settings)
    if out.get("draws", 1) == 1 or not out.get("subspace"):
        out.pop("draws", None)
    return out
