"""Hessian trace estimation: the result record and a dispatcher over the estimators.

The trace :math:`\\operatorname{tr}(H) = \\sum_i \\lambda_i` of the loss Hessian is a
cheap scalar summary of curvature. Three ways to get it share one result type,
:class:`TraceResult`:

- ``"hutchinson"`` -- :func:`~flatness.curvature.hutchinson.hutchinson_trace`, the
  unbiased Monte Carlo estimator of Hutchinson (1989);
- ``"hutchpp"`` -- :func:`~flatness.curvature.meyer2021hutchpp.hutchpp_trace`, Hutch++ of
  Meyer, Musco, Musco & Woodruff (SOSA 2021), which removes a low-rank part exactly
  and is far more accurate per product when the spectrum decays;
- ``"exact"`` -- ``flatness.curvature.exact_trace.exact_hessian_trace``, one product per
  unit vector (small models only).
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Any

from flatness.results import Result, format_float

TRACE_METHODS = ("hutchpp", "hutchinson", "exact")
"""The names :func:`hessian_trace` accepts for ``method``."""


@dataclasses.dataclass(frozen=True)
class TraceResult(Result):
    """A trace estimate with the evidence behind it.

    Attributes:
        estimate: The trace estimate.
        stderr: Its standard error (``0.0`` for an exact value, ``nan`` when too few
            probes were drawn to estimate it).
        method: ``"hutchinson"``, ``"hutchpp"`` or ``"exact"``.
        matvecs: Operator products spent (the change in the operator's ``matvecs``).
        seconds: Wall-clock seconds.
        probes: Number of random Hutchinson probes averaged (for Hutch++ the probes of
            the residual after the low-rank part is removed).
        converged: True when the requested target standard error was met, when the
            value is exact, or -- for a fixed-budget run without a target -- when a
            finite standard error is available as the error bar.
        samples: The per-probe values :math:`z_i^\\top A z_i` whose mean is the
            stochastic part of the estimate.
        distribution: The probe distribution (``"rademacher"`` or ``"gaussian"``;
            ``None`` for exact traces).
        seed: The seed of the probes (``None`` for exact traces).
        budget: The maximum number of products allowed (``None`` if unbounded).
        sketch_rank: Hutch++ only: the rank of the low-rank part taken exactly.
        target_stderr: The requested standard error, if any.
        relative_target: Whether ``target_stderr`` was relative to ``|estimate|``.
    """

    estimate: float
    stderr: float
    method: str
    matvecs: int
    seconds: float
    probes: int = 0
    converged: bool = True
    samples: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    distribution: str | None = None
    seed: int | None = None
    budget: int | None = None
    sketch_rank: int = 0
    target_stderr: float | None = None
    relative_target: bool = True

    @property
    def relative_stderr(self) -> float:
        """The standard error relative to ``|estimate|`` (``inf`` if the estimate is 0)."""
        if self.estimate == 0.0:
            return 0.0 if self.stderr == 0.0 else math.inf
        return self.stderr / abs(self.estimate)

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """A normal confidence interval :math:`\\hat t \\pm z_{(1+\\alpha)/2}\\,\\mathrm{se}`.

        The interval rests on the central limit theorem over the probes; with few
        probes (say, under 30) and heavy-tailed samples it covers less often than
        ``level``.

        Args:
            level: The nominal coverage, in ``(0, 1)``.

        Returns:
            ``(low, high)``; ``(nan, nan)`` when the standard error is unknown.

        Examples:
            >>> r = TraceResult(estimate=10.0, stderr=1.0, method="hutchinson",
            ...                 matvecs=50, seconds=0.0, probes=50)
            >>> tuple(round(x, 3) for x in r.ci(0.95))
            (8.04, 11.96)
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        if not math.isfinite(self.stderr):
            return (math.nan, math.nan)
        half = NormalDist().inv_cdf(0.5 + level / 2.0) * self.stderr
        return (self.estimate - half, self.estimate + half)

    def __repr__(self) -> str:
        parts = [
            f"method={self.method!r}",
            f"estimate={format_float(self.estimate)}",
            f"stderr={format_float(self.stderr, 3)}",
            f"probes={self.probes}",
            f"matvecs={self.matvecs}",
        ]
        if self.budget is not None:
            parts.append(f"budget={self.budget}")
        if self.sketch_rank:
            parts.append(f"sketch_rank={self.sketch_rank}")
        parts += [f"converged={self.converged}", f"seconds={format_float(self.seconds, 3)}"]
        return f"TraceResult({', '.join(parts)})"


def hessian_trace(
    target: Any,
    *,
    method: str = "hutchpp",
    budget: int = 100,
    target_stderr: float | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> TraceResult:
    """Estimate the trace of the Hessian of an objective (or of any symmetric operator).

    .. math::

        \\operatorname{tr}(H) = \\sum_{i=1}^n H_{ii} = \\sum_{i=1}^n \\lambda_i(H).

    Args:
        target: A :class:`flatness.Objective` (its Hessian is used) or a
            :class:`~flatness.curvature.operator.SymmetricOperator`.
        method: ``"hutchpp"`` (default; Meyer et al. 2021), ``"hutchinson"``
            (Hutchinson 1989) or ``"exact"`` (one product per parameter; small models).
        budget: Most operator products the stochastic methods may spend.
        target_stderr: Stop once the standard error is at most this fraction of
            ``|estimate|`` (pass ``absolute=True`` for a target in trace units). The
            exact method ignores it.
        seed: Seed of the random probes. The exact method ignores it.
        **kwargs: Further options of the chosen estimator (``block_size``,
            ``distribution``, ``min_probes``, ``absolute``) and Hessian options passed to
            :func:`~flatness.curvature.operator.as_operator`. For ``"exact"`` they all go
            to ``exact_hessian_trace``.

    Returns:
        A :class:`TraceResult`.

    Raises:
        ValueError: For an unknown ``method``.

    Examples:
        >>> import torch
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum([4.0, 2.0, 1.0] + [0.0] * 17)
        >>> tr = hessian_trace(A, method="hutchpp", budget=30, seed=0)
        >>> round(tr.estimate, 8), tr.matvecs <= 30
        (7.0, True)
    """
    if method == "hutchpp":
        from flatness.curvature.meyer2021hutchpp import hutchpp_trace

        return hutchpp_trace(
            target, budget=budget, target_stderr=target_stderr, seed=seed, **kwargs
        )
    if method == "hutchinson":
        from flatness.curvature.hutchinson import hutchinson_trace

        return hutchinson_trace(
            target, budget=budget, target_stderr=target_stderr, seed=seed, **kwargs
        )
    if method == "exact":
        from flatness.curvature.exact_trace import exact_hessian_trace

        result: TraceResult = exact_hessian_trace(target, **kwargs)
        return result
    raise ValueError(f"unknown trace method {method!r}; expected one of {TRACE_METHODS}")
