"""Hutchinson's stochastic trace estimator.

For a symmetric :math:`A \\in \\mathbb{R}^{n \\times n}` and random probes with
:math:`\\mathbb{E}[z z^\\top] = I`,

.. math::

    \\operatorname{tr}(A) = \\mathbb{E}\\left[z^\\top A z\\right]
    \\approx \\hat t_m = \\frac{1}{m} \\sum_{i=1}^m z_i^\\top A z_i,

(M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
Laplacian smoothing splines", Communications in Statistics - Simulation and
Computation 18(3), 1989). The per-probe variance is
:math:`2(\\lVert A \\rVert_F^2 - \\sum_i A_{ii}^2)` for Rademacher probes and
:math:`2 \\lVert A \\rVert_F^2` for Gaussian ones, so Rademacher probes are exact on a
diagonal matrix. The standard error is estimated from the samples,
:math:`\\mathrm{se} = s_m / \\sqrt{m}`.

The helpers here (probe drawing, sample statistics and the stopping rule) are shared
with :mod:`flatness.curvature.meyer2021hutchpp`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, get_args

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.operator import (
    SymmetricOperator,
    Target,
    hessian_gradient_equivalents,
    operator_choices,
    operator_for,
)
from flatness.curvature.options import HessianOptions, ProbeDistribution, resolve_hessian_options
from flatness.curvature.trace_result import TraceMethod, TraceResult
from flatness.results import Meter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords

PROBE_DISTRIBUTIONS: tuple[str, ...] = get_args(ProbeDistribution)
"""Probe distributions the stochastic trace estimators accept."""


def check_trace_options(
    *,
    budget: int,
    target_stderr: float | None,
    min_probes: int,
    block_size: int,
    distribution: str,
) -> None:
    """Validate the options shared by the stochastic trace estimators.

    Raises:
        ValueError: If any option is out of range.

    Examples:
        >>> check_trace_options(budget=10, target_stderr=None, min_probes=10, block_size=8,
        ...                     distribution="rademacher")
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if isinstance(min_probes, bool) or not isinstance(min_probes, int) or min_probes < 2:
        raise ValueError(f"min_probes must be an integer >= 2, got {min_probes!r}")
    if target_stderr is not None and not (target_stderr > 0 and math.isfinite(target_stderr)):
        raise ValueError(f"target_stderr must be positive and finite, got {target_stderr!r}")
    if distribution not in PROBE_DISTRIBUTIONS:
        raise ValueError(
            f"unknown probe distribution {distribution!r}; expected one of {PROBE_DISTRIBUTIONS}"
        )


def draw_probes(
    generator: torch.Generator,
    dim: int,
    count: int,
    distribution: str,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Draw a ``(dim, count)`` block of probe vectors with ``E[z z^T] = I``.

    Probes are drawn one at a time on the CPU in float64 from ``generator`` and only
    then cast and moved, so the ``j``-th probe of a seed is the same on every device,
    for every operator dtype and for every block size.

    Args:
        generator: A CPU :class:`torch.Generator`.
        dim: Length of each probe.
        count: Number of probes.
        distribution: ``"rademacher"`` (entries ``±1``) or ``"gaussian"`` (``N(0, 1)``).
        dtype: The dtype of the returned block.
        device: The device of the returned block.

    Returns:
        The probes as the columns of a ``(dim, count)`` tensor.

    Raises:
        ValueError: For an unknown ``distribution``.

    Examples:
        >>> gen = torch.Generator().manual_seed(0)
        >>> Z = draw_probes(gen, 4, 2, "rademacher", dtype=torch.float32,
        ...                 device=torch.device("cpu"))
        >>> Z.shape, bool((Z.abs() == 1).all())
        (torch.Size([4, 2]), True)
    """
    store = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    block = torch.empty(count, dim, dtype=store)
    if distribution == "rademacher":
        for j in range(count):
            block[j] = torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8)
        block.mul_(2).sub_(1)
    elif distribution == "gaussian":
        for j in range(count):
            block[j] = torch.randn(dim, generator=generator, dtype=torch.float64)
    else:
        raise ValueError(f"unknown probe distribution {distribution!r}")
    return block.T.contiguous().to(device=device, dtype=dtype)


def quadratic_forms(Z: Tensor, AZ: Tensor) -> list[float]:
    """The column-wise quadratic forms of a block of probes and its product.

    Returns:
        :math:`z_j^\\top (A z_j)` for each column ``j``, as Python floats.
    """
    prod = Z.detach() * AZ.detach().to(Z.dtype)
    if prod.dtype not in (torch.float32, torch.float64):
        prod = prod.float()
    return [float(x) for x in prod.sum(dim=0).double().cpu()]


def sample_stats(samples: Sequence[float]) -> tuple[float, float]:
    """Return ``(mean, standard error)`` of the samples.

    The standard error is :math:`s / \\sqrt{m}` with the unbiased sample standard
    deviation :math:`s`; it is ``nan`` for fewer than two samples.

    Returns:
        The mean (``nan`` without samples) and its standard error.

    Examples:
        >>> sample_stats([1.0, 2.0, 3.0, 4.0])
        (2.5, 0.6454972243679028)
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return (mean, math.nan)
    return (mean, float(x.std(ddof=1) / math.sqrt(x.size)))


def target_met(
    estimate: float,
    stderr: float,
    probes: int,
    *,
    target_stderr: float,
    relative: bool,
    min_probes: int,
) -> bool:
    """The stopping rule: enough probes and a standard error within the target.

    .. math::

        m \\ge m_{\\min} \\quad\\text{and}\\quad
        \\mathrm{se}_m \\le \\begin{cases}
            \\varepsilon \\, |\\hat t_m| & \\text{relative (default)} \\\\
            \\varepsilon & \\text{absolute.}
        \\end{cases}

    The rule looks only at the estimated error, never at how much the running mean
    moved between steps (a mean that happens to stand still says nothing about its
    error). The minimum number of probes guards against a sample standard deviation
    that is small by chance.

    Returns:
        Whether the run may stop.

    Examples:
        >>> target_met(10.0, 0.05, 20, target_stderr=0.01, relative=True, min_probes=10)
        True
        >>> target_met(10.0, 0.05, 5, target_stderr=0.01, relative=True, min_probes=10)
        False
    """
    if probes < min_probes or not math.isfinite(stderr):
        return False
    tolerance = target_stderr * abs(estimate) if relative else target_stderr
    return stderr <= tolerance


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """The settings a stochastic trace estimator runs with (validated on creation).

    Attributes:
        budget: Most operator products to spend.
        target_stderr: Optional target standard error (relative unless ``absolute``).
        absolute: Read ``target_stderr`` in the units of the trace.
        min_probes: Probes required before the target may stop the run.
        block_size: Probes per block product.
        distribution: ``"rademacher"`` or ``"gaussian"``.
        seed: Seed of the CPU generator that draws the probes.

    Raises:
        ValueError: If an option is out of range (:func:`check_trace_options`).
    """

    budget: int
    target_stderr: float | None
    absolute: bool
    min_probes: int
    block_size: int
    distribution: ProbeDistribution
    seed: int

    def __post_init__(self) -> None:
        check_trace_options(
            budget=self.budget,
            target_stderr=self.target_stderr,
            min_probes=self.min_probes,
            block_size=self.block_size,
            distribution=self.distribution,
        )

    def converged(self, met: bool, stderr: float) -> bool:
        """The convergence flag of a stochastic estimate.

        Returns:
            With a target: whether it was ``met``; without one: whether a finite
            standard error is available as the error bar.
        """
        return met if self.target_stderr is not None else math.isfinite(stderr)


class TraceSamples(NamedTuple):
    """What a stochastic trace kernel computed on an operator (no cost, no settings)."""

    estimate: float
    stderr: float
    converged: bool
    samples: list[float]
    sketch_rank: int = 0


def run_trace_estimator(
    method: TraceMethod,
    kernel: Callable[[SymmetricOperator, ProbeSettings], TraceSamples],
    target: Target,
    probes: ProbeSettings,
    hessian: HessianOptions | None,
) -> TraceResult:
    """Run a stochastic trace ``kernel`` on the operator of ``target``, metered.

    The shared front of :func:`hutchinson_trace` and
    :func:`~flatness.curvature.meyer2021hutchpp.hutchpp_trace`: builds (and closes) the
    operator, counts products and time, and fills in the cost and the settings.

    Args:
        method: The name the result carries (``"hutchinson"``, ``"hutchpp"``).
        kernel: The estimator proper, on an operator.
        target: An Objective or a symmetric operator.
        probes: The validated settings.
        hessian: How to multiply the Hessian of an Objective.

    Returns:
        A :class:`~flatness.curvature.trace_result.TraceResult` whose ``settings`` are the
        keyword arguments of the public estimator.

    Raises:
        TypeError: If ``target`` is neither an Objective nor an operator, or Hessian
            options come with an operator.
    """
    with operator_for(target, hessian) as op, Meter(op) as meter:
        out = kernel(op, probes)
    return TraceResult(
        estimate=out.estimate,
        stderr=out.stderr,
        method=method,
        matvecs=meter.matvecs,
        seconds=meter.seconds,
        probes=len(out.samples),
        converged=out.converged,
        samples=tuple(out.samples),
        distribution=probes.distribution,
        seed=probes.seed,
        budget=probes.budget,
        sketch_rank=out.sketch_rank,
        target_stderr=probes.target_stderr,
        relative_target=not probes.absolute,
        gradient_equivalents=hessian_gradient_equivalents(op, meter.matvecs),
        choices=operator_choices(op),
        settings={**dataclasses.asdict(probes), "hessian": hessian},
    )


def hutchinson_trace(
    target: Target,
    *,
    budget: int = 100,
    target_stderr: float | None = None,
    absolute: bool = False,
    min_probes: int = 10,
    block_size: int = 8,
    distribution: ProbeDistribution = "rademacher",
    seed: int = 0,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> TraceResult:
    """Hutchinson's estimate of the trace of a symmetric operator.

    .. math::

        \\hat t_m = \\frac{1}{m} \\sum_{i=1}^m z_i^\\top A z_i, \\qquad
        \\mathrm{se} = \\frac{1}{\\sqrt{m}} \\sqrt{\\frac{1}{m-1}
        \\sum_{i=1}^m \\left(z_i^\\top A z_i - \\hat t_m\\right)^2}

    (Hutchinson 1989). Probes are multiplied in blocks of ``block_size`` with
    ``op.matmat``. Without ``target_stderr`` exactly ``budget`` products are spent. With
    it, the run stops after the first block at which at least ``min_probes`` probes
    are in and the standard error is at most ``target_stderr * |estimate|`` (or at
    most ``target_stderr`` when ``absolute=True``); if the budget runs out first the
    result has ``converged=False``. A relative target cannot be met by an estimate
    near zero; use an absolute one there.

    Args:
        target: A :class:`flatness.Objective` (its Hessian) or a
            :class:`~flatness.curvature.operator.SymmetricOperator`.
        budget: Most operator products (= probes) to spend.
        target_stderr: Optional target standard error, relative to ``|estimate|``
            unless ``absolute`` is set.
        absolute: Read ``target_stderr`` in the units of the trace.
        min_probes: Probes required before the target may stop the run (at least 2).
        block_size: Probes per ``matmat`` call.
        distribution: ``"rademacher"`` (lower variance, exact on diagonals) or
            ``"gaussian"``.
        seed: Seed of the CPU generator that draws the probes; the same seed gives the
            same probes on every device and for every ``block_size``.
        hessian: How to multiply the Hessian when ``target`` is an Objective.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Returns:
        A :class:`~flatness.curvature.trace_result.TraceResult` with ``method="hutchinson"``.

    Raises:
        ValueError: If an option is out of range.
        TypeError: If ``target`` is neither an Objective nor an operator, or Hessian
            options come with an operator.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
        >>> tr = hutchinson_trace(A, budget=16, seed=0)
        >>> tr.estimate, tr.stderr, tr.matvecs  # Rademacher probes: exact on a diagonal
        (55.0, 0.0, 16)
        >>> tr = hutchinson_trace(A, budget=1000, target_stderr=0.01, seed=0)
        >>> tr.probes  # stderr is 0 already, so it stops at min_probes (rounded to a block)
        16
    """
    probes = ProbeSettings(
        budget=budget,
        target_stderr=target_stderr,
        absolute=absolute,
        min_probes=min_probes,
        block_size=block_size,
        distribution=distribution,
        seed=seed,
    )
    return run_trace_estimator(
        "hutchinson", _hutchinson, target, probes, resolve_hessian_options(hessian, legacy)
    )


def sample_quadratic_forms(
    op: SymmetricOperator,
    generator: torch.Generator,
    limit: int,
    *,
    target_stderr: float | None,
    absolute: bool,
    min_probes: int,
    block_size: int,
    distribution: str,
    project: Tensor | None = None,
    offset: float = 0.0,
) -> tuple[list[float], bool]:
    """Draw probes in blocks and collect :math:`z^\\top A z` until ``limit`` samples or
    the target standard error of ``offset + mean`` is met.

    With ``project`` (an orthonormal ``Q``), probes are first projected onto the
    complement of its range, :math:`z \\leftarrow (I - QQ^\\top) z`, as Hutch++'s
    residual phase needs.

    Returns:
        The samples and whether the target was met.
    """
    samples: list[float] = []
    while len(samples) < limit:
        count = min(block_size, limit - len(samples))
        Z = draw_probes(generator, op.dim, count, distribution, dtype=op.dtype, device=op.device)
        if project is not None:
            Z = Z - project @ (project.T @ Z)
        samples.extend(quadratic_forms(Z, op.matmat(Z)))
        if target_stderr is not None:
            mean, stderr = sample_stats(samples)
            if target_met(
                offset + mean,
                stderr,
                len(samples),
                target_stderr=target_stderr,
                relative=not absolute,
                min_probes=min_probes,
            ):
                return samples, True
    return samples, False


def _hutchinson(op: SymmetricOperator, probes: ProbeSettings) -> TraceSamples:
    """Hutchinson's estimate on ``op``: the mean of ``budget`` (or fewer) quadratic forms."""
    samples, met = sample_quadratic_forms(
        op,
        torch.Generator().manual_seed(probes.seed),
        probes.budget,
        target_stderr=probes.target_stderr,
        absolute=probes.absolute,
        min_probes=probes.min_probes,
        block_size=probes.block_size,
        distribution=probes.distribution,
    )
    estimate, stderr = sample_stats(samples)
    return TraceSamples(estimate, stderr, probes.converged(met, stderr), samples)
