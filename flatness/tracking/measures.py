"""The measures a tracker takes at each measured step, made cheap for a moving model.

Between two tracked steps the parameters move a little, so each measure reuses what
it learnt at the previous step, without giving up the accuracy test a cold call
passes:

- ``lambda_max`` (and the top-k with ``k=...``): thick-restart Lanczos
  (:func:`~flatness.curvature.eigenvalues.hessian_eigenvalues`) warm-started from
  the previous call's Ritz vectors (``v0=previous``) and certified by the same
  residual test as a cold call; the first call, and a call after one whose values
  were not finite, start cold;
- ``trace``: Hutch++ (:func:`~flatness.curvature.trace.hessian_trace`) with the same
  seed at every step, so the probes are common random numbers across steps and the
  trajectory shows the change of the trace, not the change of the probes;
- ``keskar_sharpness``: Keskar et al.'s ε-sharpness with its default ascent and the
  same random start at every step;
- ``noise_scale``: the gradient noise scale :math:`B_\\mathrm{simple}` (McCandlish et
  al. 2018) from per-example gradients on the tracker's fixed subset.

A callable ``measure(objective) -> Result`` is tracked too (any estimator result of
the contract in :mod:`flatness.results`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flatness.curvature.eigen_result import EigenResult
from flatness.curvature.eigenvalues import hessian_eigenvalues
from flatness.curvature.objective import Objective
from flatness.curvature.options import HessianOptions
from flatness.curvature.trace import hessian_trace
from flatness.results import ResultContract
from flatness.sharpness.keskar import keskar_sharpness
from flatness.sharpness.noise_scale import gradient_noise_scale
from flatness.tracking.records import measure_fields

__all__ = [
    "TRACKED_MEASURES",
    "MeasureSpec",
    "TrackedMeasure",
    "WarmEigenvalues",
    "tracked_measures",
]

MeasureSpec = (
    str | Sequence[str] | Mapping[str, Mapping[str, Any] | Callable[[Objective], ResultContract]]
)
"""The tracker's ``measures=``: names, or ``{name: settings}``, or ``{name: callable}``."""

_ESTIMATORS: dict[str, Callable[..., ResultContract]] = {
    "trace": hessian_trace,
    "keskar_sharpness": keskar_sharpness,
    "noise_scale": gradient_noise_scale,
}
_EIGEN_DEFAULTS: dict[str, Any] = {"k": 1, "tol": 1e-3}

TRACKED_MEASURES = ("lambda_max", *_ESTIMATORS)
"""The built-in tracked measures."""


@dataclass
class TrackedMeasure:
    """One measure, called at each measured step with the same settings and seed.

    Attributes:
        name: The measure's name (the prefix of its record fields).
        function: ``function(objective, **arguments) -> Result``.
        arguments: Its keyword arguments (settings, seed, Hessian options).
    """

    name: str
    function: Callable[..., ResultContract]
    arguments: dict[str, Any] = field(default_factory=dict)

    def measure(self, obj: Objective) -> dict[str, Any]:
        """Measure at the objective's parameters.

        Returns:
            The record fields (:func:`~flatness.tracking.records.measure_fields`).
        """
        result = self.function(obj, **self.arguments)
        self.checked()
        return measure_fields(self.name, result)

    def checked(self) -> None:
        """After the first call: the model is known to be deterministic in evaluation.

        Its Hessian operators skip the determinism check (two forward passes) from now
        on: the tracker's model is the same module at every step.
        """
        options = self.arguments.get("hessian")
        if isinstance(options, HessianOptions) and options.check_determinism:
            self.arguments["hessian"] = dataclasses.replace(options, check_determinism=False)


@dataclass
class WarmEigenvalues(TrackedMeasure):
    """The top-k Hessian eigenvalues, each call warm-started from the previous one.

    Attributes:
        previous: The previous call's result (with its eigenvectors), or ``None``.
    """

    previous: EigenResult | None = field(default=None, repr=False)

    def measure(self, obj: Objective) -> dict[str, Any]:
        """Measure, starting from the previous Ritz vectors when there are any.

        Returns:
            ``lambda_max``, ``lambda_2`` … ``lambda_k`` with their error bars and flags,
            and the call's cost (``lambda_max_matvecs``, ...); ``lambda_max_warm`` is 1
            when the call was warm-started.
        """
        result = hessian_eigenvalues(obj, v0=self.previous, **self.arguments)
        self.checked()
        warm = self.previous is not None
        finite = all(math.isfinite(v) for v in result.eigenvalues)
        self.previous = result if finite and result.eigenvectors is not None else None
        names = [self.name, *(f"lambda_{i + 2}" for i in range(result.k - 1))]
        return {**measure_fields(self.name, result, names), f"{self.name}_warm": int(warm)}


def _checked(name: str, function: Callable[..., Any], arguments: Mapping[str, Any]) -> None:
    """Refuse settings that ``function`` does not name (its ``**legacy`` catch-all aside)."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    known = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ValueError(
            f"tracked measure {name!r}: unknown settings {unknown}; "
            f"{function.__name__} takes {known}"
        )


def _one(
    name: str, spec: Mapping[str, Any] | Callable[..., Any], seed: int, hessian: HessianOptions
) -> TrackedMeasure:
    if callable(spec):
        return TrackedMeasure(name, spec)
    settings = dict(spec)
    if name == "lambda_max":
        arguments = {**_EIGEN_DEFAULTS, "seed": seed, **settings}
        arguments.update(return_eigenvectors=True, hessian=hessian)
        _checked(name, hessian_eigenvalues, {**arguments, "v0": None})
        return WarmEigenvalues(name, hessian_eigenvalues, arguments)
    if name not in _ESTIMATORS:
        raise ValueError(
            f"unknown tracked measure {name!r}; the built-in ones are {list(TRACKED_MEASURES)} "
            "(or give {name: callable(objective) -> Result})"
        )
    function = _ESTIMATORS[name]
    arguments = {"seed": seed, **settings}
    if "hessian" in inspect.signature(function).parameters:
        arguments["hessian"] = hessian
    _checked(name, function, arguments)
    return TrackedMeasure(name, function, arguments)


def tracked_measures(
    spec: MeasureSpec, *, seed: int, hessian: HessianOptions | None = None
) -> list[TrackedMeasure]:
    """The tracked measures a tracker's ``measures=`` names.

    Args:
        spec: A name, a sequence of names (default settings), or ``{name: settings}``
            / ``{name: callable}``. Settings are the estimator's keyword arguments
            (``{"lambda_max": {"k": 3, "tol": 1e-4}, "trace": {"budget": 40}}``);
            ``lambda_max`` defaults to ``k=1, tol=1e-3``, the others to their
            estimator's defaults.
        seed: The seed of every measure (the same at every step), unless its settings
            name another.
        hessian: How Hessian-vector products are taken.

    Returns:
        One :class:`TrackedMeasure` per name, in order.

    Raises:
        ValueError: For an unknown measure, an unknown setting, or no measure.

    Examples:
        >>> [m.name for m in tracked_measures(("lambda_max", "trace"), seed=0)]
        ['lambda_max', 'trace']
        >>> tracked_measures({"trace": {"budgett": 3}}, seed=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: tracked measure 'trace': unknown settings ['budgett']; ...
    """
    options = hessian if hessian is not None else HessianOptions()
    named: Mapping[str, Any] = (
        {spec: {}}
        if isinstance(spec, str)
        else spec
        if isinstance(spec, Mapping)
        else {name: {} for name in spec}
    )
    if not named:
        raise ValueError("a tracker needs at least one measure, e.g. measures=('lambda_max',)")
    return [_one(str(name), settings, seed, options) for name, settings in named.items()]
