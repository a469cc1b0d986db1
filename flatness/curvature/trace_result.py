"""The result of a trace estimate, and the names of the trace methods.

:class:`TraceResult` is what every trace estimator returns:
:func:`~flatness.curvature.hutchinson.hutchinson_trace`,
:func:`~flatness.curvature.meyer2021hutchpp.hutchpp_trace`,
:func:`~flatness.curvature.exact_trace.exact_hessian_trace` and the dispatcher over them,
:func:`~flatness.curvature.trace.hessian_trace`. The estimators import it from here and
the dispatcher imports the estimators, so the arrows point one way.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Any, ClassVar, Literal, get_args

from flatness.curvature.options import ProbeDistribution
from flatness.results import Result, format_float

__all__ = ["TRACE_METHODS", "ExactMethod", "TraceMethod", "TraceResult"]

#: The estimators :func:`~flatness.curvature.trace.hessian_trace` dispatches to.
TraceMethod = Literal["hutchpp", "hutchinson", "exact"]
#: How :func:`~flatness.curvature.exact_trace.exact_hessian_trace` sums the trace.
ExactMethod = Literal["auto", "layers", "examples"]

TRACE_METHODS: tuple[str, ...] = get_args(TraceMethod)
"""The names :func:`~flatness.curvature.trace.hessian_trace` accepts for ``method``."""


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
        evaluations: Loss evaluations besides the products (none).
        gradients: Gradient-like passes spent besides the products: the exact trace
            back-propagates one cotangent per class over the data (``C`` for ``C``
            classes); 0 for the stochastic methods.
        gradient_equivalents: The cost in full gradients: ``COST_HVP * matvecs`` for
            the Hessian of a model (``gradients`` for the exact trace), NaN for a plain
            operator.
        choices: The choices of the Hessian operator that change the last bits
            (:attr:`~flatness.curvature.hessian.HessianOperator.numerics`: strategy,
            retained batches, fallback, vectorized blocks, threads, ``deterministic``); empty for
            an operator that makes none (a plain matrix) and for the exact trace.
            Kept in :meth:`details`.
        settings: The keyword arguments that reproduce the result with the function
            that returned it. Left out of ``repr`` and :meth:`details` (the results
            store keeps them as the task's key).

    The result contract (:mod:`flatness.results`) reads ``value`` as :attr:`estimate`.
    Its store row is component ``""`` with the standard error and the convergence flag;
    its error kind is ``"stderr"`` even where the error is missing (fewer than two
    probes).
    """

    error_kind_on_every_row: ClassVar[bool] = True

    estimate: float
    stderr: float
    method: TraceMethod
    matvecs: int
    seconds: float
    probes: int = 0
    converged: bool = True
    samples: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    distribution: ProbeDistribution | None = None
    seed: int | None = None
    budget: int | None = None
    sketch_rank: int = 0
    target_stderr: float | None = None
    relative_target: bool = True
    evaluations: int = 0
    gradients: int = 0
    gradient_equivalents: float = math.nan
    choices: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def value(self) -> float:
        """The headline of the result contract: :attr:`estimate`."""
        return self.estimate

    @property
    def relative_stderr(self) -> float:
        """The standard error relative to ``|estimate|``.

        For an estimate of 0 it is ``inf``, or 0 when the error is 0 too.
        """
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

        Raises:
            ValueError: If ``level`` is not in ``(0, 1)``.

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
