r"""The 2-D loss landscape around a checkpoint, with filter-normalized random directions.

Li, Xu, Taylor, Studer & Goldstein (NeurIPS 2018, "Visualizing the Loss Landscape of
Neural Nets") plot

.. math::

    f(\alpha, \beta) = L(\theta + \alpha\, \delta + \beta\, \eta)

for two random directions :math:`\delta, \eta` drawn from a Gaussian with the shapes of
the parameters and *filter-normalized* (their Sec. 4): every filter :math:`j` of every
layer :math:`i` is rescaled to the norm of the corresponding filter of the weights,

.. math::

    \delta_{i,j} \leftarrow \frac{\delta_{i,j}}{\lVert \delta_{i,j} \rVert}
    \lVert \theta_{i,j} \rVert,

where a filter is a slice along the first dimension (an output channel of a
convolution, a row of a linear layer's weight). One-dimensional parameters (biases,
BatchNorm scales and shifts) are set to zero in the directions, as Li et al. do by
default. Filter normalization removes the scale invariance of ReLU/BatchNorm networks
that makes unnormalized plots of two networks incomparable.

The loss is the :class:`~flatness.Objective`'s (same data, mode and loss, including a
``batch_loss`` hook); the accuracy is the arg-max accuracy when the model outputs
``(n, classes)`` scores and the batches hold integer labels.

The result's headline ``value`` (the result contract's one number) is the largest rise
of the loss on the grid above the centre, :math:`\max_{i,j} f(\alpha_j, \beta_i) -
f(0, 0) \ge 0` (NaN when the centre is not a grid point): a descriptive summary of the
plot in the spirit of Keskar et al.'s box maximum, not a measure of Li et al.'s. The
grid itself is the result (:meth:`LandscapeResult.to_frame`).

Reference:
    H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein (2018). Visualizing the loss
    landscape of neural nets. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.objective import Objective
from flatness.evaluation import mean_loss_and_accuracy
from flatness.results import Meter, format_float
from flatness.sharpness.checks import check_integer, require_deterministic
from flatness.sharpness.contract import (
    ForwardPassesOnly,
    NoConvergenceTest,
    NoErrorBar,
    SharpnessResult,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LandscapeResult", "filter_normalized_directions", "loss_landscape_2d"]


@dataclass(frozen=True, eq=False)
class LandscapeResult(ForwardPassesOnly, NoConvergenceTest, NoErrorBar, SharpnessResult):
    """The loss (and accuracy) on a 2-D grid of a plane through a checkpoint.

    Besides the fields below it has the result contract's names: ``value`` (the largest
    loss rise on the grid above the centre, see the module doc), ``stderr`` (NaN),
    ``converged`` (``True``), ``gradients`` and ``matvecs`` (0),
    ``gradient_equivalents`` and ``settings``.

    Attributes:
        xs: Coordinates :math:`\\alpha` along the first direction.
        ys: Coordinates :math:`\\beta` along the second direction.
        loss: ``loss[i, j]`` is :math:`f(\\theta + xs_j\\, \\delta + ys_i\\, \\eta)` (rows
            follow ``ys``, as ``matplotlib.contour(xs, ys, loss)`` expects).
        accuracy: The accuracy on the same grid, or ``None``.
        direction_norms: :math:`(\\lVert\\delta\\rVert, \\lVert\\eta\\rVert)`.
        theta_norm: :math:`\\lVert\\theta\\rVert` of the objective's variables.
        normalization: ``"filter"`` (Li et al.) or ``"given"`` (directions passed in).
        seed: The seed of the directions (``None`` when they were given).
        seconds: Wall-clock seconds.
        evaluations: Full passes over the objective's data (one per grid point).
    """

    xs: np.ndarray = field(repr=False)
    ys: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    accuracy: np.ndarray | None = field(repr=False)
    direction_norms: tuple[float, float]
    theta_norm: float
    normalization: str
    seed: int | None
    seconds: float
    evaluations: int

    @property
    def value(self) -> float:
        """The largest loss on the grid minus the loss at the centre (NaN without a centre)."""
        rows, cols = np.flatnonzero(self.ys == 0.0), np.flatnonzero(self.xs == 0.0)
        if rows.size == 0 or cols.size == 0:
            return math.nan
        return float(np.nanmax(self.loss) - self.loss[rows[0], cols[0]])

    @property
    def settings(self) -> dict[str, Any]:
        """The keyword arguments that reproduce this result with :func:`loss_landscape_2d`.

        For directions that were passed in (``seed`` is ``None``) pass them again.
        """
        out: dict[str, Any] = {
            "span": (float(self.xs[0]), float(self.xs[-1])),
            "steps": (len(self.xs), len(self.ys)),
            "accuracy": self.accuracy is not None,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def to_frame(self) -> pd.DataFrame:
        """The grid as a tidy table.

        Returns:
            A :class:`pandas.DataFrame` with columns ``x, y, metric, value``, one row per
            grid point and metric (``"loss"``, and ``"accuracy"`` when recorded).
        """
        import pandas as pd

        rows = []
        for metric, grid in (("loss", self.loss), ("accuracy", self.accuracy)):
            if grid is None:
                continue
            for i, y in enumerate(self.ys):
                for j, x in enumerate(self.xs):
                    rows.append(
                        {"x": float(x), "y": float(y), "metric": metric, "value": grid[i, j]}
                    )
        return pd.DataFrame(rows, columns=["x", "y", "metric", "value"])

    def __repr__(self) -> str:
        return (
            f"LandscapeResult(grid={len(self.ys)}x{len(self.xs)}, "
            f"x=[{format_float(float(self.xs[0]))}, {format_float(float(self.xs[-1]))}], "
            f"y=[{format_float(float(self.ys[0]))}, {format_float(float(self.ys[-1]))}], "
            f"loss=[{format_float(float(np.nanmin(self.loss)))}, "
            f"{format_float(float(np.nanmax(self.loss)))}], "
            f"normalization={self.normalization!r}, seed={self.seed}, "
            f"evaluations={self.evaluations}, seconds={format_float(self.seconds, 3)})"
        )


def filter_normalized_directions(obj: Objective, *, count: int = 2, seed: int = 0) -> Tensor:
    r"""Random directions in parameter space, filter-normalized as in Li et al. (2018).

    Each direction is drawn from :math:`\mathcal N(0, I)` in float64 on the CPU from a
    generator seeded with ``seed`` (so it is the same on every device and dtype); then,
    per parameter of the objective, each filter (slice along dimension 0) is rescaled
    to the norm of the same filter of :math:`\theta_0`, and parameters with fewer than
    two dimensions (biases, BatchNorm) are zeroed.

    Args:
        obj: The objective whose variables (and their point :math:`\theta_0`) are used.
        count: How many directions.
        seed: Seed of the Gaussian draws.

    Returns:
        A ``(count, obj.dim)`` tensor on ``obj.device`` with ``obj.dtype``.

    Raises:
        ValueError: If ``count`` is not a positive integer.

    Examples:
        >>> from torch import nn
        >>> net = nn.Linear(3, 2)
        >>> obj = Objective(net, (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])))
        >>> d = filter_normalized_directions(obj, count=1, seed=0)[0]
        >>> w = obj.unflatten(d)
        >>> bool(torch.allclose(w["weight"].norm(dim=1), net.weight.norm(dim=1)))
        True
        >>> bool((w["bias"] == 0).all())
        True
    """
    check_integer("count", count, minimum=1)
    gen = torch.Generator().manual_seed(seed)
    theta = obj.theta0.detach().cpu().to(torch.float64)
    out = torch.zeros(count, obj.dim, dtype=torch.float64)
    for k in range(count):
        for block in obj.blocks:
            draw = torch.randn(block.shape, generator=gen, dtype=torch.float64)
            if len(block.shape) < 2:
                continue
            w = theta[block.offset : block.offset + block.numel].reshape(block.shape[0], -1)
            d = draw.reshape(block.shape[0], -1)
            scale = w.norm(dim=1) / d.norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
            out[k, block.offset : block.offset + block.numel] = (d * scale[:, None]).reshape(-1)
    return out.to(device=obj.device, dtype=obj.dtype)


def _grid(span: tuple[float, float], steps: int) -> np.ndarray:
    lo, hi = (float(s) for s in span)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise ValueError(f"span must be two finite numbers (low, high) with low <= high: {span}")
    check_integer("steps", steps, minimum=1)
    grid = np.linspace(lo, hi, steps)
    grid[np.abs(grid) <= 1e-12 * max(1.0, hi - lo)] = 0.0  # the centre exactly at 0
    return grid


def _directions(
    obj: Objective, directions: Sequence[Tensor] | None, seed: int
) -> tuple[Tensor, Tensor, str, int | None]:
    """The plane's two directions, their normalization and their seed."""
    if directions is None:
        d1, d2 = filter_normalized_directions(obj, count=2, seed=seed)
        return d1, d2, "filter", seed
    if len(directions) != 2:
        raise ValueError(f"directions must hold two vectors, got {len(directions)}")
    d1, d2 = (torch.as_tensor(d).reshape(-1) for d in directions)
    if d1.numel() != obj.dim or d2.numel() != obj.dim:
        raise ValueError(
            f"each direction must have obj.dim = {obj.dim} entries, "
            f"got {d1.numel()} and {d2.numel()}"
        )
    d1 = d1.to(device=obj.device, dtype=obj.dtype)
    d2 = d2.to(device=obj.device, dtype=obj.dtype)
    return d1, d2, "given", None


def loss_landscape_2d(
    obj: Objective,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    steps: int | tuple[int, int] = 21,
    seed: int = 0,
    accuracy: bool = True,
    directions: Sequence[Tensor] | None = None,
) -> LandscapeResult:
    r"""The loss :math:`f(\theta_0 + \alpha\delta + \beta\eta)` on a grid (Li et al. 2018).

    Args:
        obj: The objective; the plane passes through its :math:`\theta_0`.
        span: The range of both coordinates :math:`\alpha, \beta` (in units of the
            directions, i.e. of the filters' norms).
        steps: Grid points per axis, or ``(steps_x, steps_y)``.
        seed: Seed of the two filter-normalized directions
            (:func:`filter_normalized_directions`).
        accuracy: Also record the accuracy where the model outputs ``(n, classes)``
            scores (or a Hugging Face output with such ``logits``) and the batches hold
            integer labels (the targets of ``(x, y)`` pairs, a dict batch's
            ``labels``), whatever computes the loss; ``None`` otherwise.
        directions: Two flat directions of length ``obj.dim`` to use instead of the
            random ones (e.g. towards another checkpoint); ``seed`` is then unused.

    Returns:
        A :class:`LandscapeResult`; the grid point :math:`(0, 0)`, when present, equals
        ``obj.value()`` exactly.

    Raises:
        ValueError: For a ``span`` that is not two finite numbers in order, ``steps``
            that are not positive integers, or ``directions`` that are not two vectors
            of ``obj.dim`` entries.

    Examples:
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> obj = Objective(net, (torch.randn(10, 3), torch.randint(0, 2, (10,))))
        >>> res = loss_landscape_2d(obj, steps=3)
        >>> res.loss.shape, bool(res.loss[1, 1] == obj.value())
        ((3, 3), True)
    """
    nx, ny = (steps, steps) if isinstance(steps, int) else steps
    xs, ys = _grid(span, nx), _grid(span, ny)
    require_deterministic(obj, "loss_landscape_2d")
    with Meter() as meter:
        d1, d2, normalization, used_seed = _directions(obj, directions, seed)
        loss = np.empty((ny, nx))
        acc: np.ndarray | None = np.empty((ny, nx)) if accuracy else None
        theta0 = obj.theta0.detach()
        for i, b in enumerate(ys):
            for j, a in enumerate(xs):
                theta = theta0 + float(a) * d1 + float(b) * d2
                if acc is not None:
                    value, hit = mean_loss_and_accuracy(
                        obj.model_fn(theta),
                        obj.batches,
                        obj.loss_fn,
                        batch_loss=obj.batch_loss,
                        reduce=obj.reduce,
                    )
                    loss[i, j] = float(value)
                    if hit is None:
                        acc = None
                    else:
                        acc[i, j] = hit
                else:
                    loss[i, j] = float(obj.value(theta))
        meter.count(evaluations=nx * ny)
    return LandscapeResult(
        xs=xs,
        ys=ys,
        loss=loss,
        accuracy=acc,
        direction_norms=(float(d1.norm()), float(d2.norm())),
        theta_norm=float(theta0.norm()),
        normalization=normalization,
        seed=used_seed,
        seconds=meter.seconds,
        evaluations=meter.evaluations,
    )
