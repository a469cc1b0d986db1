r"""Worst-case sharpness in a ball, plain or adaptive (scale-invariant), with m-sharpness.

Dinh et al. (2017) showed that the plain worst-case sharpness of Keskar et al. (2017)
and the Hessian's top eigenvalue are not properties of the function a ReLU network
computes: rescaling one layer by :math:`\alpha > 0` and the next by :math:`1/\alpha`
leaves the function unchanged and makes the minimum as sharp or as flat as one likes.
Adaptive sharpness (Kwon et al. 2021, ASAM; Andriushchenko et al. 2023) measures the
perturbation relative to each weight's magnitude and so answers that objection:

.. math::

    S_\rho(w) = \max_{\lVert T_w^{-1} \delta \rVert_p \le \rho} f(w + \delta) - f(w),
    \qquad T_w = \operatorname{diag}(|w| + \eta),

with :math:`p \in \{2, \infty\}`; ``adaptive=False`` takes :math:`T_w = I`, the plain
worst-case sharpness. Writing :math:`\delta = T_w \gamma`, the problem is
:math:`\max_{\lVert\gamma\rVert_p \le \rho} g(\gamma)` with
:math:`g(\gamma) = f(w + T_w\gamma)` and :math:`\nabla g = T_w \nabla f(w + T_w\gamma)`.

**Invariance.** If :math:`w' = A w` for a positive diagonal :math:`A` and the network
computes the same function, :math:`f'(w') = f(A^{-1} w')`, then with :math:`\eta = 0`
:math:`T_{w'} = A T_w`, so :math:`g'(\gamma) = g(\gamma)` and
:math:`\nabla g' = \nabla g`: every step below, and the value, are the same for both
parametrizations (up to rounding). With :math:`\eta > 0` the invariance is only
approximate.

**Algorithm.** Projected gradient ascent in :math:`\gamma` for ``steps`` steps of size
:math:`\alpha` (default :math:`2\rho/\sqrt{\text{steps}}`, so that a start anywhere in
the ball can reach its boundary within :math:`\sqrt{\text{steps}}` steps and the rest
refine the direction), starting from a seeded uniform point of the ball (at an exact
minimum the gradient vanishes and ascent from :math:`\gamma = 0` could not start):

* :math:`\ell_2`: :math:`\gamma \leftarrow \Pi_\rho(\gamma + \alpha\, \nabla g /
  \lVert\nabla g\rVert_2)`, the projection rescaling onto the sphere when outside;
* :math:`\ell_\infty`: :math:`\gamma \leftarrow \operatorname{clip}_{[-\rho,\rho]}
  (\gamma + \alpha\, \operatorname{sign}\nabla g)`.

The largest loss seen (including :math:`f(w)`, since :math:`\delta = 0` is feasible) is
kept, so the value is a lower bound on :math:`S_\rho` and never negative.

**m-sharpness** (Foret et al. 2021; Andriushchenko & Flammarion 2022): with ``m`` set,
the examples are split into consecutive chunks of ``m``, the maximization is done on
each chunk's mean loss separately, and the chunk sharpnesses are averaged, with their
standard error over chunks. Since a maximum of a mean is at most the mean of the
maxima, m-sharpness is at least the full-data sharpness.

References:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017). On
    large-batch training for deep learning: Generalization gap and sharp minima. ICLR.

    L. Dinh, R. Pascanu, S. Bengio and Y. Bengio (2017). Sharp minima can generalize for
    deep nets. ICML.

    J. Kwon, J. Kim, H. Park and I. K. Choi (2021). ASAM: Adaptive sharpness-aware
    minimization for scale-invariant learning of deep neural networks. ICML.

    P. Foret, A. Kleiner, H. Mobahi and B. Neyshabur (2021). Sharpness-aware minimization
    for efficiently improving generalization. ICLR.

    M. Andriushchenko and N. Flammarion (2022). Towards understanding sharpness-aware
    minimization. ICML.

    M. Andriushchenko, F. Croce, M. Müller, M. Hein and N. Flammarion (2023). A modern
    look at the relationship between sharpness and generalization. ICML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from flatness.curvature.hutchinson import sample_stats
from flatness.curvature.objective import Batch, Objective
from flatness.results import Meter, format_float, gradient_equivalents
from flatness.sharpness.checks import (
    Norm,
    NormSpec,
    check_integer,
    check_nonnegative,
    check_norm,
    check_positive,
    require_deterministic,
)
from flatness.sharpness.contract import NoConvergenceTest, SharpnessResult
from flatness.sharpness.perturbations import (
    chunk_value,
    chunk_value_and_gradient,
    elementwise_scale,
    example_chunks,
    random_in_ball,
    whole_data,
)

__all__ = ["AdaptiveSharpnessResult", "adaptive_sharpness"]


@dataclass(frozen=True, eq=False)
class AdaptiveSharpnessResult(NoConvergenceTest, SharpnessResult):
    """Worst-case (adaptive or plain) sharpness with the evidence for it.

    Besides the fields below it has the result contract's names: ``converged``
    (``True``: a fixed number of ascent steps has no convergence test), ``matvecs``
    (0), ``gradient_equivalents`` and ``settings``.

    Attributes:
        value: The sharpness ``max_loss - loss`` (for m-sharpness, the mean over chunks).
        stderr: Standard error of ``value`` over chunks (``nan`` without ``m`` or with
            a single chunk).
        loss: :math:`f(w)` (for m-sharpness, the mean of the chunk losses).
        max_loss: The largest loss found in the ball (for m-sharpness, the mean of the
            chunks' maxima).
        rho: Radius of the ball in the scaled coordinates :math:`T_w^{-1}\\delta`.
        p: The norm, ``"2"`` or ``"inf"``.
        adaptive: Whether :math:`T_w = \\operatorname{diag}(|w| + \\eta)` (else ``I``).
        eta: The :math:`\\eta` added to :math:`|w|` (unused when not adaptive).
        steps: Gradient-ascent steps per chunk.
        step_size: The step size :math:`\\alpha` in the scaled coordinates.
        m: Examples per chunk, or ``None`` for the whole data set.
        chunks: The number of chunks maximized over (1 without ``m``).
        evaluations: Loss evaluations, each over one chunk (or the whole data set).
        gradients: Gradient evaluations, each over one chunk (or the whole data set).
        seconds: Wall-clock seconds.
        seed: Seed of the random starting points.
        chunk_values: The sharpness of each chunk.
        perturbation: The best perturbation :math:`\\delta` found, in parameter space
            (whole-data runs only).
    """

    setting_fields: ClassVar[tuple[str, ...]] = (
        "rho",
        "p",
        "adaptive",
        "eta",
        "steps",
        "step_size",
        "m",
        "seed",
    )

    value: float
    stderr: float
    loss: float
    max_loss: float
    rho: float
    p: Norm
    adaptive: bool
    eta: float
    steps: int
    step_size: float
    m: int | None
    chunks: int
    evaluations: int
    gradients: int
    seconds: float
    seed: int
    chunk_values: tuple[float, ...] = field(default=(), repr=False)
    perturbation: Tensor | None = field(default=None, repr=False)

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients over the whole data set.

        Every chunk takes ``steps`` gradients and two plain loss evaluations (at
        :math:`w` and at the last point), each over the chunk's examples; the chunks
        partition the data, so the whole costs ``steps`` full gradients and two full
        forward passes whatever ``m`` is.
        """
        per_chunk_gradients = self.gradients // self.chunks
        per_chunk_forwards = self.evaluations // self.chunks - per_chunk_gradients
        return gradient_equivalents(evaluations=per_chunk_forwards, gradients=per_chunk_gradients)

    def __repr__(self) -> str:
        kind = "adaptive" if self.adaptive else "plain"
        return (
            f"AdaptiveSharpnessResult({kind}, value={format_float(self.value)}, "
            f"stderr={format_float(self.stderr, 3)}, loss={format_float(self.loss)}, "
            f"max_loss={format_float(self.max_loss)}, rho={self.rho:g}, p={self.p!r}, "
            f"eta={self.eta:g}, steps={self.steps}, m={self.m}, chunks={self.chunks}, "
            f"evaluations={self.evaluations}, gradients={self.gradients}, "
            f"seconds={format_float(self.seconds, 3)})"
        )


def _check_settings(
    obj: Objective, eta: float, steps: int, m: int | None, step_size: float | None
) -> None:
    check_nonnegative("eta", eta, " (0 for exact invariance)")
    check_integer("steps", steps, minimum=0)
    if step_size is not None:
        check_positive("step_size", step_size)
    if m is not None and (
        isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= obj.num_examples
    ):
        raise ValueError(
            f"m must be None (the whole data set) or an integer number of examples per "
            f"chunk between 1 and {obj.num_examples}, got {m!r}"
        )


def _maximize(
    obj: Objective,
    chunk: Sequence[tuple[float, Batch]],
    scale: Tensor,
    *,
    rho: float,
    norm: Norm,
    steps: int,
    step_size: float,
    generator: torch.Generator,
    meter: Meter,
) -> tuple[float, float, Tensor]:
    """Projected gradient ascent on one chunk: (loss, max loss, best delta).

    The loss and gradient evaluations are counted on ``meter``.
    """
    theta0 = obj.theta0
    base = float(chunk_value(obj, theta0, chunk))
    best, best_delta = base, torch.zeros_like(theta0)
    gamma = random_in_ball(generator, obj.dim, rho, norm, dtype=obj.dtype, device=obj.device)
    meter.count(evaluations=1)

    def consider(loss: float, delta: Tensor) -> None:
        nonlocal best, best_delta
        if math.isnan(loss):
            raise FloatingPointError(
                "the loss is NaN at a perturbed point: the radius rho may be too large "
                "for this model, or the model overflows in this dtype"
            )
        if loss > best:
            best, best_delta = loss, delta

    for _ in range(steps):
        delta = scale * gamma
        loss, grad = chunk_value_and_gradient(obj, theta0 + delta, chunk)
        meter.count(evaluations=1, gradients=1)
        consider(float(loss), delta)
        direction = scale * grad
        if norm == "2":
            size = direction.norm()
            if size > 0:
                gamma = gamma + (step_size / size) * direction
            radius = gamma.norm()
            if radius > rho:
                gamma = gamma * (rho / radius)
        else:
            gamma = (gamma + step_size * direction.sign()).clamp(-rho, rho)
    delta = scale * gamma
    consider(float(chunk_value(obj, theta0 + delta, chunk)), delta)
    meter.count(evaluations=1)
    return base, best, best_delta


def adaptive_sharpness(
    obj: Objective,
    *,
    rho: float,
    p: NormSpec = 2,
    adaptive: bool = True,
    eta: float = 0.0,
    steps: int = 20,
    step_size: float | None = None,
    m: int | None = None,
    seed: int = 0,
) -> AdaptiveSharpnessResult:
    r"""Worst-case sharpness :math:`\max_{\lVert T_w^{-1}\delta\rVert_p\le\rho} f(w+\delta)-f(w)`.

    See the module docstring for the definition, the algorithm and the references.

    Args:
        obj: The objective; its variables :math:`w` are perturbed.
        rho: Radius of the ball in the scaled coordinates (relative to :math:`|w|`
            when adaptive, absolute otherwise).
        p: ``2`` or ``"inf"``: the norm of the ball.
        adaptive: Scale by :math:`T_w = \operatorname{diag}(|w| + \eta)` (Kwon et al.
            2021); ``False`` gives the plain worst-case sharpness with :math:`T = I`.
        eta: Added to :math:`|w|` so that zero weights can move too. ``0`` (the
            default) makes the measure exactly invariant to positive elementwise
            rescalings that leave the function unchanged.
        steps: Projected gradient-ascent steps (per chunk).
        step_size: Step size in the scaled coordinates (default
            :math:`2\rho/\sqrt{\text{steps}}`).
        m: Examples per chunk for m-sharpness; ``None`` maximizes over the whole data set.
        seed: Seed of the random starting point(s), drawn on the CPU in float64.

    Returns:
        An :class:`AdaptiveSharpnessResult`.

    Raises:
        ValueError: For a non-positive ``rho``, an unknown ``p``, a negative ``eta`` or
            ``steps``, or an ``m`` outside ``1..num_examples``.
        FloatingPointError: If the loss is NaN at a perturbed point (``rho`` too large
            for the model, or an overflow in its dtype).

    Examples:
        >>> from torch import nn
        >>> from flatness.curvature.objective import Objective
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
        >>> X, y = torch.randn(12, 3, dtype=torch.float64), torch.randint(0, 2, (12,))
        >>> obj = Objective(net, (X, y))
        >>> res = adaptive_sharpness(obj, rho=0.05, steps=5)
        >>> res.value >= 0, res.evaluations, res.gradients
        (True, 7, 5)
        >>> adaptive_sharpness(obj, rho=0.05, steps=2, m=4).chunks
        3
    """
    rho = check_positive("rho", rho)
    norm = check_norm(p)
    _check_settings(obj, eta, steps, m, step_size)
    require_deterministic(obj, "adaptive_sharpness")
    alpha = float(step_size) if step_size is not None else 2.0 * rho / math.sqrt(max(steps, 1))
    bases, maxima = [], []
    delta = None
    with Meter() as meter:
        generator = torch.Generator().manual_seed(seed)
        scale = elementwise_scale(obj.theta0, adaptive=adaptive, eta=float(eta))
        chunks = [whole_data(obj)] if m is None else example_chunks(obj, m)
        for chunk in chunks:
            base, best, delta = _maximize(
                obj,
                chunk,
                scale,
                rho=rho,
                norm=norm,
                steps=steps,
                step_size=alpha,
                generator=generator,
                meter=meter,
            )
            bases.append(base)
            maxima.append(best)
    values = [b - a for a, b in zip(bases, maxima, strict=True)]
    value, stderr = sample_stats(values)
    return AdaptiveSharpnessResult(
        value=value,
        stderr=stderr,
        loss=sum(bases) / len(bases),
        max_loss=sum(maxima) / len(maxima),
        rho=rho,
        p=norm,
        adaptive=bool(adaptive),
        eta=float(eta),
        steps=steps,
        step_size=alpha,
        m=m,
        chunks=len(chunks),
        evaluations=meter.evaluations,
        gradients=meter.gradients,
        seconds=meter.seconds,
        seed=seed,
        chunk_values=tuple(values),
        perturbation=delta.detach() if m is None and delta is not None else None,
    )
