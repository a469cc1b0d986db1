r"""PAC-Bayes flatness: the largest Gaussian weight noise the training loss tolerates.

Jiang et al. (2019) found the PAC-Bayes-derived flatness measures among the best
predictors of generalization in their study of over 40 measures. They ask how much
Gaussian noise the weights :math:`w` tolerate before the training criterion :math:`L`
(the loss, or the accuracy for classification) moves by more than a target deviation
:math:`d` (they use :math:`d = 0.1`), and report the inverse noise variance:

* ``pacbayes.flatness``: :math:`\mu = 1/\sigma'^2`, where :math:`\sigma'` is the
  largest :math:`\sigma` with

  .. math::
      \bigl|\, \mathbb{E}_{u \sim \mathcal N(0, \sigma^2 I)} [L(w + u)] - L(w) \,\bigr|
      \le d;

* ``pacbayes.mag.flatness`` (magnitude-aware): :math:`\mu = 1/\alpha'^2`, where
  :math:`\alpha'` is the largest :math:`\alpha` with the same condition for
  independent :math:`u_i \sim \mathcal N(0,\, \alpha^2 w_i^2 + \epsilon^2)`, i.e. a
  per-weight standard deviation :math:`\sqrt{\alpha^2 w_i^2 + \epsilon^2}`, with
  :math:`\epsilon = 10^{-3}` by default so that zero weights are perturbed too.

Jiang et al.'s own search measures the deviation of the training *accuracy* (a 0.1
drop); ``criterion="accuracy"`` reproduces that setting for classifiers. The default,
``criterion="loss"``, works for any objective (regression, custom ``batch_loss``) and
varies smoothly with :math:`\sigma`.

A larger value means a sharper minimum. The expectation is a Monte Carlo mean over
``samples`` draws :math:`u_s = s(\sigma) \odot z_s` with fixed standard normal
:math:`z_s`: the *same* seeded draws are reused for every candidate :math:`\sigma`
(common random numbers), so the estimated deviation is a smooth, usually monotone
function of :math:`\sigma` and the search does not chase sampling noise. The largest
:math:`\sigma` is found by bisection on :math:`\log\sigma` inside ``sigma_bounds``
(Jiang et al.'s Algorithm 1 bisects on :math:`\sigma`; the log scale suits a bracket
spanning decades) until the bracket's ratio is below ``1 + rtol``; the reported
:math:`\sigma'` is the bracket's lower end, the largest value known to satisfy the
condition. If even the lower bound violates it, or the upper bound satisfies it, the
result is flagged ``converged=False`` with the reason in ``status``.

For a quadratic :math:`L(w^\ast + u) = L(w^\ast) + \tfrac12 u^\top H u` the expected
increase is :math:`\tfrac12\sigma^2 \operatorname{tr}H`, so
:math:`\sigma'^2 = 2d/\operatorname{tr}H` and the flatness measure is
:math:`\operatorname{tr}H/(2d)`.

References:
    Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan and S. Bengio (2019). Fantastic
    generalization measures and where to find them. arXiv:1912.02178 (ICLR 2020).
    Sections on sharpness-based measures (``pacbayes.flatness``,
    ``pacbayes.mag.flatness``) and the :math:`\sigma` search (their Algorithm 1).

    G. K. Dziugaite and D. M. Roy (2017). Computing nonvacuous generalization bounds for
    deep (stochastic) neural networks with many more parameters than training data. UAI.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from flatness.curvature.hutchinson import sample_stats
from flatness.curvature.objective import Objective
from flatness.results import Meter, format_float
from flatness.sharpness.checks import (
    check_integer,
    check_nonnegative,
    check_positive,
    require_deterministic,
)
from flatness.sharpness.contract import ForwardPassesOnly, NoErrorBar, SharpnessResult
from flatness.sharpness.perturbations import standard_normal

__all__ = ["Criterion", "PacBayesFlatnessResult", "pacbayes_flatness", "pacbayes_mag_flatness"]

Criterion: TypeAlias = Literal["loss", "accuracy"]
"""What the noise must not move by more than the threshold: the loss or the accuracy."""

CRITERIA: tuple[Criterion, ...] = get_args(Criterion)


@dataclass(frozen=True, eq=False)
class PacBayesFlatnessResult(ForwardPassesOnly, NoErrorBar, SharpnessResult):
    """PAC-Bayes flatness :math:`1/\\sigma'^2` with the search's evidence.

    Besides the fields below it has the result contract's names: ``stderr`` (NaN: the
    bisection's value has no standard error; ``deviation_stderr`` is the error of the
    deviation at ``sigma``), ``gradients`` (0), ``matvecs`` (0),
    ``gradient_equivalents`` and ``settings``. Its rows in the results store keep
    ``converged``.

    Attributes:
        value: :math:`1/\\sigma'^2` (larger is sharper).
        sigma: :math:`\\sigma'` (:math:`\\alpha'` for the magnitude-aware measure), the
            largest noise scale found to keep the deviation within ``threshold``.
        bracket: The final ``(lower, upper)`` bracket: ``lower`` satisfies the condition,
            ``upper`` violates it (when ``converged``).
        deviation: The estimated deviation :math:`|\\overline{L(w+u_s)} - L(w)|` at
            ``sigma``.
        deviation_stderr: Its Monte Carlo standard error.
        threshold: The target deviation :math:`d`.
        criterion: ``"loss"`` or ``"accuracy"``.
        base: :math:`L(w)`, the criterion at the unperturbed weights.
        measure: ``"pacbayes.flatness"`` or ``"pacbayes.mag.flatness"``.
        magnitude_aware: Whether the noise variance is :math:`\\alpha^2 w_i^2 +
            \\epsilon^2`.
        epsilon: The :math:`\\epsilon` of the magnitude-aware noise.
        iterations: Bisection steps taken.
        samples: Monte Carlo draws per candidate (the same draws for every candidate).
        evaluations: Full-data evaluations of the criterion.
        converged: Whether the bracket was valid and narrowed to ``rtol``.
        status: ``"converged"``, ``"max_iterations"``, ``"below_bracket"`` (even the
            lower bound deviates too much) or ``"above_bracket"`` (the upper bound is
            still within the threshold).
        seconds: Wall-clock seconds.
        seed: Seed of the draws.
        sigma_bounds: The initial bracket of the search.
        rtol: The relative width at which the bisection stops.
        max_iterations: The most bisection steps allowed.
    """

    setting_fields: ClassVar[tuple[str, ...]] = (
        "magnitude_aware",
        "criterion",
        "threshold",
        "samples",
        "sigma_bounds",
        "rtol",
        "max_iterations",
        "epsilon",
        "seed",
    )

    stores_converged: ClassVar[bool] = True

    value: float
    sigma: float
    bracket: tuple[float, float]
    deviation: float
    deviation_stderr: float
    threshold: float
    criterion: Criterion
    base: float
    measure: str
    magnitude_aware: bool
    epsilon: float
    iterations: int
    samples: int
    evaluations: int
    converged: bool
    status: str
    seconds: float
    seed: int
    sigma_bounds: tuple[float, float] = (1e-6, 10.0)
    rtol: float = 1e-2
    max_iterations: int = 50

    def __repr__(self) -> str:
        return (
            f"PacBayesFlatnessResult({self.measure!r}, value={format_float(self.value)}, "
            f"sigma={format_float(self.sigma)}, bracket=({format_float(self.bracket[0])}, "
            f"{format_float(self.bracket[1])}), deviation={format_float(self.deviation)}"
            f"±{format_float(self.deviation_stderr, 2)}, threshold={self.threshold:g}, "
            f"criterion={self.criterion!r}, status={self.status!r}, "
            f"iterations={self.iterations}, samples={self.samples}, "
            f"evaluations={self.evaluations}, seconds={format_float(self.seconds, 3)})"
        )


def _accuracy(obj: Objective, theta: Tensor) -> float:
    """Fraction of examples whose top-scoring class is the target, at ``theta``.

    Under a process group each rank's weighted partial sum is completed by the
    objective's ``reduce`` (the weights are over all ranks' examples).
    """
    fn = obj.model_fn(theta)
    total = 0.0
    with torch.no_grad():
        for weight, (x, y) in zip(obj.weights, obj.batches, strict=True):
            scores = fn(x)
            target = y.argmax(-1) if y.is_floating_point() and y.ndim == scores.ndim else y
            total += weight * float((scores.argmax(-1) == target).double().mean())
    return float(obj.reduce(torch.tensor(total, dtype=torch.float64, device=obj.device)))


def _check_accuracy_batches(obj: Objective) -> None:
    batches_ok = all(
        isinstance(b, tuple | list) and len(b) == 2 and all(isinstance(t, Tensor) for t in b)
        for b in obj.batches
    )
    if obj.batch_loss is not None or not batches_ok:
        raise ValueError(
            'criterion="accuracy" needs (inputs, targets) batches and a model returning '
            "class scores (an Objective built with loss_fn, not a batch_loss hook); "
            'use criterion="loss" otherwise'
        )


def _check_settings(
    samples: int,
    sigma_bounds: tuple[float, float],
    rtol: float,
    max_iterations: int,
    epsilon: float,
    criterion: Criterion,
) -> tuple[float, float]:
    check_integer("samples", samples, minimum=1)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    check_positive("rtol", rtol)
    check_integer("max_iterations", max_iterations, minimum=0)
    check_nonnegative("epsilon", epsilon)
    try:
        lo, hi = (float(s) for s in sigma_bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"sigma_bounds must be a (lower, upper) pair of positive numbers, got {sigma_bounds!r}"
        ) from None
    if not (0 < lo < hi < math.inf):
        raise ValueError(f"sigma_bounds must satisfy 0 < lower < upper < inf, got {sigma_bounds!r}")
    return lo, hi


def pacbayes_flatness(
    obj: Objective,
    *,
    magnitude_aware: bool = False,
    criterion: Criterion = "loss",
    threshold: float = 0.1,
    samples: int = 16,
    sigma_bounds: tuple[float, float] = (1e-6, 10.0),
    rtol: float = 1e-2,
    max_iterations: int = 50,
    epsilon: float = 1e-3,
    seed: int = 0,
) -> PacBayesFlatnessResult:
    r"""PAC-Bayes flatness :math:`1/\sigma'^2` of Jiang et al. (2019).

    See the module docstring for the definitions and the search.

    Args:
        obj: The objective; its variables :math:`w` are perturbed.
        magnitude_aware: ``pacbayes.mag.flatness``: noise variance
            :math:`\alpha^2 w_i^2 + \epsilon^2` per weight (else :math:`\sigma^2`).
        criterion: ``"loss"`` (the objective's mean loss) or ``"accuracy"`` (top-1
            accuracy of the model's class scores on the objective's ``(x, y)`` batches).
        threshold: The target deviation :math:`d` of the criterion (Jiang et al.: 0.1).
        samples: Monte Carlo draws per candidate :math:`\sigma`.
        sigma_bounds: The initial bracket ``(lower, upper)`` of the search.
        rtol: Stop when ``upper / lower <= 1 + rtol``.
        max_iterations: The most bisection steps.
        epsilon: The :math:`\epsilon` of the magnitude-aware noise.
        seed: Seed of the draws (made on the CPU in float64, reused for every candidate).

    Returns:
        A :class:`PacBayesFlatnessResult`.

    Raises:
        ValueError: For invalid settings, or ``criterion="accuracy"`` on an objective
            without ``(inputs, targets)`` batches.

    Examples:
        >>> from torch import nn
        >>> from flatness.curvature.objective import Objective
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
        >>> X, y = torch.randn(12, 3, dtype=torch.float64), torch.randint(0, 2, (12,))
        >>> res = pacbayes_flatness(Objective(net, (X, y)), samples=4)
        >>> res.converged, res.deviation <= res.threshold, res.value == res.sigma**-2
        (True, True, True)
    """
    threshold = check_positive("threshold", threshold)
    lo, hi = _check_settings(samples, sigma_bounds, rtol, max_iterations, epsilon, criterion)
    if criterion == "accuracy":
        _check_accuracy_batches(obj)
    require_deterministic(obj, "pacbayes_mag_flatness" if magnitude_aware else "pacbayes_flatness")
    with Meter() as meter:
        theta0 = obj.theta0

        def evaluate(theta: Tensor) -> float:
            meter.count(evaluations=1)
            return _accuracy(obj, theta) if criterion == "accuracy" else float(obj.value(theta))

        base = evaluate(theta0)

        def deviation(sig: float) -> tuple[float, float]:
            if magnitude_aware:
                std = torch.sqrt(sig**2 * theta0.square() + float(epsilon) ** 2)
            else:
                std = torch.full_like(theta0, sig)
            generator = torch.Generator().manual_seed(seed)  # common random numbers
            values = []
            for _ in range(samples):
                z = standard_normal(generator, obj.dim, dtype=obj.dtype, device=obj.device)
                values.append(evaluate(theta0 + std * z))
            mean, stderr = sample_stats(values)
            return abs(mean - base), stderr

        def within(dev: float) -> bool:
            return math.isfinite(dev) and dev <= threshold

        iterations = 0
        dev_lo, err_lo = deviation(lo)
        if not within(dev_lo):
            status = "below_bracket"
        else:
            dev_hi, err_hi = deviation(hi)
            if within(dev_hi):
                lo, dev_lo, err_lo, status = hi, dev_hi, err_hi, "above_bracket"
            else:
                while hi / lo > 1.0 + rtol and iterations < max_iterations:
                    mid = math.sqrt(lo * hi)
                    dev_mid, err_mid = deviation(mid)
                    iterations += 1
                    if within(dev_mid):
                        lo, dev_lo, err_lo = mid, dev_mid, err_mid
                    else:
                        hi = mid
                status = "converged" if hi / lo <= 1.0 + rtol else "max_iterations"
    return PacBayesFlatnessResult(
        value=1.0 / lo**2,
        sigma=lo,
        bracket=(lo, hi),
        deviation=dev_lo,
        deviation_stderr=err_lo,
        threshold=threshold,
        criterion=criterion,
        base=base,
        measure="pacbayes.mag.flatness" if magnitude_aware else "pacbayes.flatness",
        magnitude_aware=bool(magnitude_aware),
        epsilon=float(epsilon),
        iterations=iterations,
        samples=samples,
        evaluations=meter.evaluations,
        converged=status == "converged",
        status=status,
        seconds=meter.seconds,
        seed=seed,
        sigma_bounds=(float(sigma_bounds[0]), float(sigma_bounds[1])),
        rtol=float(rtol),
        max_iterations=max_iterations,
    )


pacbayes_mag_flatness = functools.partial(pacbayes_flatness, magnitude_aware=True)
pacbayes_mag_flatness.__doc__ = r"""Magnitude-aware PAC-Bayes flatness :math:`1/\alpha'^2`.

The measure ``pacbayes.mag.flatness``: :func:`pacbayes_flatness` with
``magnitude_aware=True`` (one signature, not two), so the noise on weight :math:`w_i`
has variance :math:`\alpha^2 w_i^2 + \epsilon^2`. The other keyword arguments, the
result (a :class:`PacBayesFlatnessResult` with ``measure="pacbayes.mag.flatness"``)
and the errors are :func:`pacbayes_flatness`'s.
"""
