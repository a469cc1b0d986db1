r"""Average-case sharpness: the mean loss increase under Gaussian weight noise.

Average-case sharpness replaces the maximum of worst-case sharpness
(:mod:`flatness.sharpness.adaptive`) by an expectation over Gaussian perturbations,
plain or scaled elementwise by the weights' magnitudes (Andriushchenko et al. 2023,
following the adaptive scaling of Kwon et al. 2021):

.. math::

    S^{\mathrm{avg}}_\sigma(w) = \mathbb{E}_{\delta \sim \mathcal N(0,\, \sigma^2 T_w^2)}
    \bigl[f(w + \delta)\bigr] - f(w), \qquad
    T_w = \operatorname{diag}(|w| + \eta)\ \text{(adaptive)}\ \text{or}\ I\ \text{(plain)}.

It is estimated by Monte Carlo: :math:`\delta_s = \sigma\, T_w z_s` with
:math:`z_s \sim \mathcal N(0, I)` drawn from a seeded generator, and the estimate is the
mean of :math:`f(w + \delta_s) - f(w)` over ``samples`` draws with its standard error
:math:`s/\sqrt{n}`. For a quadratic :math:`f(w^\ast + \delta) = f(w^\ast) +
\tfrac12\delta^\top H\delta` the plain value is exactly :math:`\tfrac12\sigma^2
\operatorname{tr} H`, the link to the Hessian trace.

**Invariance.** Under a function-preserving positive elementwise rescaling
:math:`w' = A w` and with :math:`\eta = 0`, :math:`T_{w'} = A T_w`, so the same draws
:math:`z_s` give :math:`f'(w' + \sigma T_{w'} z_s) = f(w + \sigma T_w z_s)`: the adaptive
estimate is the same number for both parametrizations (Dinh et al. 2017 show the plain
one is not).

References:
    L. Dinh, R. Pascanu, S. Bengio and Y. Bengio (2017). Sharp minima can generalize for
    deep nets. ICML.

    J. Kwon, J. Kim, H. Park and I. K. Choi (2021). ASAM: Adaptive sharpness-aware
    minimization for scale-invariant learning of deep neural networks. ICML.

    M. Andriushchenko, F. Croce, M. Müller, M. Hein and N. Flammarion (2023). A modern
    look at the relationship between sharpness and generalization. ICML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from flatness.curvature.hutchinson import sample_stats
from flatness.curvature.objective import Objective
from flatness.results import Meter, format_float
from flatness.sharpness.checks import (
    check_integer,
    check_nonnegative,
    check_positive,
    require_deterministic,
)
from flatness.sharpness.contract import ForwardPassesOnly, NoConvergenceTest, SharpnessResult
from flatness.sharpness.perturbations import elementwise_scale, standard_normal

__all__ = ["AverageSharpnessResult", "average_sharpness"]


@dataclass(frozen=True, eq=False)
class AverageSharpnessResult(ForwardPassesOnly, NoConvergenceTest, SharpnessResult):
    """Average-case sharpness with its Monte Carlo error bar.

    Besides the fields below it has the result contract's names: ``converged``
    (``True``: a fixed number of draws has no convergence test), ``gradients`` (0),
    ``matvecs`` (0), ``gradient_equivalents`` and ``settings``.

    Attributes:
        value: Mean loss increase :math:`\\overline{f(w+\\delta_s)} - f(w)`.
        stderr: Standard error of ``value`` over the draws (``nan`` for one draw).
        loss: :math:`f(w)`.
        perturbed_loss: Mean loss at the perturbed points.
        sigma: Noise scale :math:`\\sigma` (relative to :math:`|w| + \\eta` when adaptive).
        samples: Number of Monte Carlo draws.
        adaptive: Whether the noise is scaled by :math:`|w| + \\eta`.
        eta: The :math:`\\eta` added to :math:`|w|` (unused when not adaptive).
        evaluations: Full-data loss evaluations (``samples + 1``).
        seconds: Wall-clock seconds.
        seed: Seed of the draws.
        sample_values: The loss increase of each draw.
    """

    setting_fields: ClassVar[tuple[str, ...]] = ("sigma", "samples", "adaptive", "eta", "seed")

    value: float
    stderr: float
    loss: float
    perturbed_loss: float
    sigma: float
    samples: int
    adaptive: bool
    eta: float
    evaluations: int
    seconds: float
    seed: int
    sample_values: tuple[float, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        kind = "adaptive" if self.adaptive else "plain"
        return (
            f"AverageSharpnessResult({kind}, value={format_float(self.value)}, "
            f"stderr={format_float(self.stderr, 3)}, loss={format_float(self.loss)}, "
            f"sigma={self.sigma:g}, samples={self.samples}, eta={self.eta:g}, "
            f"evaluations={self.evaluations}, seconds={format_float(self.seconds, 3)})"
        )


def average_sharpness(
    obj: Objective,
    *,
    sigma: float,
    samples: int = 32,
    adaptive: bool = True,
    eta: float = 0.0,
    seed: int = 0,
) -> AverageSharpnessResult:
    r"""Average-case sharpness :math:`\mathbb{E}_\delta[f(w+\delta)] - f(w)`, plain or adaptive.

    See the module docstring for the definition and the references.

    Args:
        obj: The objective; its variables :math:`w` are perturbed.
        sigma: Standard deviation of the noise (relative to :math:`|w_i| + \eta` when
            adaptive, absolute otherwise).
        samples: Monte Carlo draws (each one full-data loss evaluation).
        adaptive: Scale the noise elementwise by :math:`|w| + \eta`; ``False`` gives
            the plain (isotropic) measure.
        eta: Added to :math:`|w|`; ``0`` keeps the measure exactly invariant to
            function-preserving positive rescalings.
        seed: Seed of the draws (made on the CPU in float64, the same on every device).

    Returns:
        An :class:`AverageSharpnessResult`.

    Raises:
        ValueError: For a non-positive ``sigma`` or ``samples``, or a negative ``eta``.
        FloatingPointError: If the loss is NaN at a perturbed point (``sigma`` too large
            for the model, or an overflow in its dtype).

    Examples:
        >>> from torch import nn
        >>> from flatness.curvature.objective import Objective
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
        >>> X, y = torch.randn(12, 3, dtype=torch.float64), torch.randint(0, 2, (12,))
        >>> res = average_sharpness(Objective(net, (X, y)), sigma=0.05, samples=8)
        >>> res.samples, res.evaluations, res.stderr > 0
        (8, 9, True)
    """
    sigma = check_positive("sigma", sigma)
    check_integer("samples", samples, minimum=1)
    check_nonnegative("eta", eta, " (0 for exact invariance)")
    require_deterministic(obj, "average_sharpness")
    with Meter() as meter:
        generator = torch.Generator().manual_seed(seed)
        theta0 = obj.theta0
        scale = sigma * elementwise_scale(theta0, adaptive=adaptive, eta=float(eta))
        loss = float(obj.value(theta0))
        increases = []
        for _ in range(samples):
            z = standard_normal(generator, obj.dim, dtype=obj.dtype, device=obj.device)
            increases.append(float(obj.value(theta0 + scale * z)) - loss)
        meter.count(evaluations=samples + 1)
    if any(math.isnan(v) for v in increases):
        raise FloatingPointError(
            "the loss is NaN at a perturbed point: sigma may be too large for this model, "
            "or the model overflows in this dtype"
        )
    value, stderr = sample_stats(increases)
    return AverageSharpnessResult(
        value=value,
        stderr=stderr,
        loss=loss,
        perturbed_loss=loss + value,
        sigma=sigma,
        samples=samples,
        adaptive=bool(adaptive),
        eta=float(eta),
        evaluations=meter.evaluations,
        seconds=meter.seconds,
        seed=seed,
        sample_values=tuple(increases),
    )
