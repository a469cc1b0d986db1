"""Hessian trace estimation: the result record and a dispatcher over the estimators.

The trace :math:`\\operatorname{tr}(H) = \\sum_i \\lambda_i` of the loss Hessian is a
cheap scalar summary of curvature. Three ways to get it share one result type,
:class:`TraceResult`:

- ``"hutchinson"`` -- :func:`~flatness.curvature.hutchinson.hutchinson_trace`, the
  unbiased Monte Carlo estimator of Hutchinson (1989);
- ``"hutchpp"`` -- :func:`~flatness.curvature.meyer2021hutchpp.hutchpp_trace`, Hutch++ of
  Meyer, Musco, Musco & Woodruff (SOSA 2021), which removes a low-rank part exactly
  and is far more accurate per product when the spectrum decays;
- ``"exact"`` -- :func:`~flatness.curvature.exact_trace.exact_hessian_trace`, no
  sampling error for piecewise-linear networks with cross-entropy (ReLU, pooling,
  linear, convolutional and eval-mode BatchNorm layers): the trace of the
  generalized Gauss-Newton matrix from per-example vector-Jacobian products, about C
  backward passes over the data for C classes, and no Hessian-vector product at all.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal, get_args

from flatness.curvature.operator import Target
from flatness.curvature.options import HessianOptions, ProbeDistribution, resolve_hessian_options
from flatness.results import Record, Result, format_float

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords

#: The estimators :func:`hessian_trace` dispatches to.
TraceMethod = Literal["hutchpp", "hutchinson", "exact"]
#: How :func:`~flatness.curvature.exact_trace.exact_hessian_trace` sums the trace.
ExactMethod = Literal["auto", "layers", "examples"]

TRACE_METHODS: tuple[str, ...] = get_args(TraceMethod)
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
    """

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

    def records(self) -> list[Record]:
        """The store row: component ``""`` with the standard error.

        Returns:
            One :class:`~flatness.results.Record`; its error kind is ``"stderr"`` even
            where the error is missing (fewer than two probes).
        """
        return [dataclasses.replace(r, error_kind=self.error_kind) for r in super().records()]

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


def hessian_trace(
    target: Target,
    *,
    method: TraceMethod = "hutchpp",
    budget: int = 100,
    target_stderr: float | None = None,
    seed: int = 0,
    absolute: bool = False,
    min_probes: int = 10,
    block_size: int = 8,
    distribution: ProbeDistribution = "rademacher",
    exact_method: ExactMethod = "auto",
    chunk_size: int | None = None,
    memory_bytes: int = 256 * 2**20,
    check: bool = True,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> TraceResult:
    """Estimate the trace of the Hessian of an objective (or of any symmetric operator).

    .. math::

        \\operatorname{tr}(H) = \\sum_{i=1}^n H_{ii} = \\sum_{i=1}^n \\lambda_i(H).

    Which settings apply to which method:

    ============================  ========  ==========  =====
    setting                       hutchpp   hutchinson  exact
    ============================  ========  ==========  =====
    budget, target_stderr, seed   yes       yes         --
    absolute, min_probes          yes       yes         --
    block_size, distribution      yes       yes         --
    hessian                       yes       yes         --
    exact_method, chunk_size      --        --          yes
    memory_bytes, check           --        --          yes
    ============================  ========  ==========  =====

    Settings that do not apply to the chosen method are ignored.

    Args:
        target: A :class:`flatness.Objective` (its Hessian is used) or a
            :class:`~flatness.curvature.operator.SymmetricOperator` (not for
            ``"exact"``, which needs the Objective).
        method: ``"hutchpp"`` (default; Meyer et al. 2021), ``"hutchinson"``
            (Hutchinson 1989) or ``"exact"`` (piecewise-linear networks with
            cross-entropy: about C backward passes for C classes, no sampling error).
        budget: Most operator products the stochastic methods may spend.
        target_stderr: Stop once the standard error is at most this fraction of
            ``|estimate|`` (with ``absolute=True``: this many trace units).
        seed: Seed of the random probes.
        absolute: Read ``target_stderr`` in the units of the trace.
        min_probes: Probes required before ``target_stderr`` may stop the run.
        block_size: Probes per block product.
        distribution: ``"rademacher"`` or ``"gaussian"`` probes.
        exact_method: ``"auto"``, ``"layers"`` or ``"examples"``: how the exact trace
            is summed (:func:`~flatness.curvature.exact_trace.exact_hessian_trace`'s
            ``method``).
        chunk_size: ``"examples"``: examples whose per-class gradients are held at once.
        memory_bytes: Memory for one chunk of the exact trace's work.
        check: Verify that the network qualifies for the exact trace.
        hessian: How to multiply the Hessian when ``target`` is an Objective.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Returns:
        A :class:`TraceResult` whose ``settings`` are this call's keyword arguments.

    Raises:
        ValueError: For an unknown ``method``, invalid options of the chosen method,
            or (``"exact"``) a network that does not qualify.
        TypeError: If ``target`` does not fit the method, or Hessian options come with
            an operator.

    Examples:
        >>> import torch
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum([4.0, 2.0, 1.0] + [0.0] * 17)
        >>> tr = hessian_trace(A, method="hutchpp", budget=30, seed=0)
        >>> round(tr.estimate, 8), tr.matvecs <= 30
        (7.0, True)
    """
    hessian = resolve_hessian_options(hessian, legacy)
    settings: dict[str, Any] = {
        "method": method,
        "budget": budget,
        "target_stderr": target_stderr,
        "seed": seed,
        "absolute": absolute,
        "min_probes": min_probes,
        "block_size": block_size,
        "distribution": distribution,
        "exact_method": exact_method,
        "chunk_size": chunk_size,
        "memory_bytes": memory_bytes,
        "check": check,
        "hessian": hessian,
    }
    result: TraceResult
    if method in ("hutchpp", "hutchinson"):
        from flatness.curvature.hutchinson import ProbeSettings, hutchinson_trace
        from flatness.curvature.meyer2021hutchpp import hutchpp_trace

        estimator = hutchpp_trace if method == "hutchpp" else hutchinson_trace
        # the stochastic estimators take exactly the fields of ProbeSettings
        probes = {f.name: settings[f.name] for f in dataclasses.fields(ProbeSettings)}
        result = estimator(target, hessian=hessian, **probes)
    elif method == "exact":
        from flatness.curvature.exact_trace import exact_hessian_trace
        from flatness.curvature.objective import Objective

        if not isinstance(target, Objective):
            raise TypeError(
                f"method='exact' needs a flatness.Objective, got {type(target).__name__}"
            )
        result = exact_hessian_trace(
            target,
            chunk_size=chunk_size,
            memory_bytes=memory_bytes,
            check=check,
            method=exact_method,
        )
    else:
        raise ValueError(f"unknown trace method {method!r}; expected one of {TRACE_METHODS}")
    return dataclasses.replace(result, settings=settings)
