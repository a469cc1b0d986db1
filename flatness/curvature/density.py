r"""The spectral density of the Hessian by stochastic Lanczos quadrature (SLQ).

The normalized spectral measure of a symmetric :math:`A \in \mathbb R^{n\times n}` with
eigenvalues :math:`\lambda_1..\lambda_n` is
:math:`\mu = \frac1n \sum_i \delta_{\lambda_i}`, so that
:math:`\int f\,d\mu = \frac1n \operatorname{tr} f(A)`. For a random probe :math:`v`
with :math:`\mathbb E[v v^\top / \lVert v\rVert^2] = I/n` (Rademacher or Gaussian),
:math:`\mathbb E\,[u^\top f(A) u] = \frac1n\operatorname{tr} f(A)` with
:math:`u = v/\lVert v\rVert`, and :math:`u^\top f(A) u` is the integral of ``f`` against
the spectral measure of ``u``. Lanczos from ``u`` gives that integral by Gauss
quadrature (Golub & Meurant 2010): with :math:`T_m = S \Theta S^\top`,

.. math::
    u^\top f(A) u \approx \sum_{i=1}^m \tau_i f(\theta_i), \qquad \tau_i = S_{1i}^2,

exact for polynomials of degree up to :math:`2m - 1`. Averaging over runs and smoothing
each node with a Gaussian kernel gives the density estimate

.. math::
    \phi_\sigma(t) = \frac{1}{R} \sum_{r=1}^R \sum_{i=1}^m \tau_i^{(r)}
    \frac{1}{\sigma\sqrt{2\pi}} \exp\Bigl(-\frac{(t - \theta_i^{(r)})^2}{2\sigma^2}\Bigr).

References:
    S. Ubaru, J. Chen and Y. Saad (2017). Fast estimation of tr(f(A)) via stochastic
    Lanczos quadrature. SIAM J. Matrix Anal. Appl. 38(4), 1075–1099.

    B. Ghorbani, S. Krishnan and Y. Xiao (2019). An investigation into neural net
    optimization via Hessian eigenvalue density. ICML.

    G. H. Golub and G. Meurant (2010). Matrices, Moments and Quadrature with
    Applications. Princeton University Press.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import torch

from flatness.curvature.hutchinson import PROBE_DISTRIBUTIONS, draw_probes
from flatness.curvature.lanczos_kernel import lanczos_tridiagonal
from flatness.curvature.operator import (
    SymmetricOperator,
    Target,
    hessian_gradient_equivalents,
    operator_choices,
    operator_for,
)
from flatness.curvature.options import HessianOptions, ProbeDistribution, resolve_hessian_options
from flatness.results import Meter, Record, Result, finite_or_none, format_float, to_plain

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords

__all__ = ["DensityResult", "spectral_density"]

DISTRIBUTIONS: tuple[str, ...] = PROBE_DISTRIBUTIONS


def gaussian_smoothing(
    grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float
) -> np.ndarray:
    r"""Average over runs of Gaussian-smoothed quadrature rules, evaluated on ``grid``.

    Args:
        grid: Points ``t`` of shape ``(G,)``.
        nodes: Quadrature nodes :math:`\theta`, shape ``(runs, m)``.
        weights: Quadrature weights :math:`\tau`, shape ``(runs, m)``, each row summing to 1.
        sigma: The kernel's standard deviation.

    Returns:
        :math:`\phi_\sigma(t)` of shape ``(G,)``; it integrates to 1 over the real line.

    Examples:
        >>> t = np.linspace(-5.0, 5.0, 1001)
        >>> phi = gaussian_smoothing(t, np.array([[0.0]]), np.array([[1.0]]), 1.0)
        >>> round(float(np.trapezoid(phi, t)), 4)
        1.0
    """
    grid = np.asarray(grid, dtype=np.float64)
    theta = np.asarray(nodes, dtype=np.float64).reshape(-1)
    tau = np.asarray(weights, dtype=np.float64).reshape(-1) / np.asarray(nodes).shape[0]
    out = np.empty(grid.shape[0], dtype=np.float64)
    chunk = max(1, 2**22 // max(1, theta.size))
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    for lo in range(0, grid.shape[0], chunk):
        z = (grid[lo : lo + chunk, None] - theta[None, :]) / sigma
        out[lo : lo + chunk] = norm * (np.exp(-0.5 * z * z) @ tau)
    return out


@dataclass(frozen=True, eq=False)
class DensityResult(Result):
    """An SLQ estimate of the normalized spectral density.

    Attributes:
        sigma: The Gaussian kernel width used for ``density``.
        steps: The Lanczos steps asked for per run.
        runs: The number of probe vectors.
        distribution: ``"rademacher"`` or ``"gaussian"`` probes.
        dim: The operator's dimension ``n``.
        matvecs: Operator products spent.
        seconds: Wall-clock seconds.
        seed: The seed of the probes.
        lanczos_steps: Steps actually taken per run (fewer at a breakdown: an invariant
            subspace, whose quadrature is then exact).
        nodes: Quadrature nodes (Ritz values), shape ``(runs, min(steps, dim))``; runs
            that stopped early are padded with their last node at weight 0.
        weights: Quadrature weights, same shape, each row summing to 1.
        grid: Points where ``density`` is evaluated.
        density: The smoothed density on ``grid`` (integrates to about 1).
        evaluations: Loss evaluations besides the products (none).
        gradients: Gradient evaluations besides the products (none).
        gradient_equivalents: The cost in full gradients: ``COST_HVP * matvecs`` for
            the Hessian of a model, NaN for a plain operator.
        choices: The choices of the Hessian operator that change the last bits
            (:attr:`~flatness.curvature.hessian.HessianOperator.numerics`: strategy,
            retained batches, fallback, vectorized blocks, threads, ``deterministic``); empty for
            an operator that makes none (a plain matrix). Kept in :meth:`details`.
        settings: The keyword arguments that reproduce the result with
            :func:`spectral_density` (left out of ``repr`` and :meth:`details`).

    The result contract (:mod:`flatness.results`) reads ``value`` as the trace estimate
    :math:`n \\cdot` :meth:`moments` ``(1)`` and ``stderr`` as its standard error over
    the runs; ``converged`` is ``True`` (SLQ has no accuracy target).
    """

    sigma: float
    steps: int
    runs: int
    distribution: ProbeDistribution
    dim: int
    matvecs: int
    seconds: float
    seed: int
    lanczos_steps: tuple[int, ...]
    nodes: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    grid: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)
    evaluations: int = 0
    gradients: int = 0
    gradient_equivalents: float = math.nan
    choices: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def value(self) -> float:
        """The headline of the result contract: the trace estimate ``dim * moments(1)``."""
        return self.dim * self.moments(1)

    @property
    def stderr(self) -> float:
        """The standard error of :attr:`value` over the runs (NaN for one run)."""
        return self.dim * self.moments_stderr(1)

    @property
    def converged(self) -> bool:
        """SLQ has no accuracy target: always ``True``."""
        return True

    def records(self) -> list[Record]:
        """The store rows: the trace and squared Frobenius norm with their standard
        errors, and the extreme Ritz values.

        Returns:
            Rows ``"trace"`` (``n m_1``), ``"frobenius2"`` (``n m_2``), ``"ritz_max"``
            and ``"ritz_min"`` (the extreme nodes, no error bar); no convergence flag.
        """
        n = self.dim
        return [
            Record(
                "trace", n * self.moments(1), finite_or_none(n * self.moments_stderr(1)), "stderr"
            ),
            Record(
                "frobenius2",
                n * self.moments(2),
                finite_or_none(n * self.moments_stderr(2)),
                "stderr",
            ),
            Record("ritz_max", float(self.nodes.max())),
            Record("ritz_min", float(self.nodes.min())),
        ]

    def details(self) -> dict[str, Any]:
        """What the results store keeps beside the rows: the quadrature itself.

        Returns:
            ``sigma``, ``steps``, ``runs``, ``dim``, ``lanczos_steps``, ``nodes`` and
            ``weights`` as plain Python values, from which a report redraws the density,
            and the operator's ``choices`` where it made any (not for a plain matrix).
        """
        keep = ("sigma", "steps", "runs", "dim", "lanczos_steps", "nodes", "weights")
        out = {k: to_plain(getattr(self, k)) for k in keep}
        if self.choices:
            out["choices"] = to_plain(self.choices)
        return out

    def run_moments(self, p: int) -> np.ndarray:
        r"""Per-run estimates of the normalized moment :math:`\mathrm{tr}(A^p)/n`.

        Returns:
            :math:`\sum_i \tau_i \theta_i^p` for each run, shape ``(runs,)``.
        """
        moments: np.ndarray = np.sum(self.weights * self.nodes**p, axis=1)
        return moments

    def moments(self, p: int) -> float:
        r"""The estimate of the normalized moment :math:`\operatorname{tr}(A^p)/n` (mean over runs).

        ``p = 1`` estimates the mean eigenvalue (trace / n), ``p = 2`` the mean squared
        eigenvalue (squared Frobenius norm / n). Each run's value is exact for the
        quadratic form :math:`u^\top A^p u` when ``p <= 2 * lanczos_steps - 1``.

        Returns:
            The mean of :meth:`run_moments` over the runs.
        """
        return float(np.mean(self.run_moments(p)))

    def moments_stderr(self, p: int) -> float:
        """The standard error of :meth:`moments` over runs.

        Returns:
            The sample standard deviation over runs divided by ``sqrt(runs)``
            (``nan`` for one run).
        """
        if self.runs < 2:
            return float("nan")
        return float(np.std(self.run_moments(p), ddof=1) / math.sqrt(self.runs))

    def evaluate(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """The smoothed density on another ``grid`` (and ``sigma``), with no new products.

        Returns:
            :func:`gaussian_smoothing` of the quadrature on ``grid``.
        """
        return gaussian_smoothing(grid, self.nodes, self.weights, sigma or self.sigma)

    @property
    def support(self) -> tuple[float, float]:
        """The smallest and largest node with positive weight."""
        live = self.nodes[self.weights > 0]
        return float(live.min()), float(live.max())

    def __repr__(self) -> str:
        lo, hi = self.support
        return (
            f"DensityResult(dim={self.dim}, runs={self.runs}, steps={self.steps}, "
            f"support=[{format_float(lo)}, {format_float(hi)}], "
            f"sigma={format_float(self.sigma, 3)}, mean={format_float(self.moments(1))}, "
            f"matvecs={self.matvecs}, seconds={format_float(self.seconds, 3)})"
        )


def _quadrature(
    op: SymmetricOperator, width: int, runs: int, distribution: str, seed: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The Gauss quadrature rules of ``runs`` Lanczos runs of ``width`` steps.

    Returns:
        Nodes and weights, shape ``(runs, width)`` (runs that broke down early padded
        with their last node at weight 0), and the steps each run took.
    """
    gen = torch.Generator().manual_seed(seed)
    nodes = np.zeros((runs, width))
    weights = np.zeros((runs, width))
    taken: list[int] = []
    for r in range(runs):
        v = draw_probes(gen, op.dim, 1, distribution, dtype=op.dtype, device=op.device)[:, 0]
        tri = lanczos_tridiagonal(op, v, width, reorthogonalize=True)
        m = tri.alphas.size
        theta, S = scipy.linalg.eigh_tridiagonal(tri.alphas, tri.betas)
        tau = S[0, :] ** 2
        nodes[r, :m] = theta
        nodes[r, m:] = theta[-1]
        weights[r, :m] = tau / tau.sum()
        taken.append(m)
        del tri  # free the basis before the next run builds its own
    return nodes, weights, taken


def _smoothed(
    nodes: np.ndarray,
    weights: np.ndarray,
    sigma: float | None,
    grid: np.ndarray | None,
    grid_size: int,
) -> tuple[float, np.ndarray, np.ndarray]:
    """The kernel width (default 1% of the nodes' range), the grid and the density on it.

    Returns:
        ``(sigma, grid, density)``; the grid is a copy of the one given.
    """
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        spread = hi - lo if hi > lo else max(abs(lo), abs(hi))
        sigma = 0.01 * spread if spread > 0 else 0.01
    if grid is None:
        grid = np.linspace(lo - 5.0 * sigma, hi + 5.0 * sigma, int(grid_size))
    grid = np.array(grid, dtype=np.float64)
    return sigma, grid, gaussian_smoothing(grid, nodes, weights, sigma)


def spectral_density(
    target: Target,
    *,
    steps: int = 80,
    runs: int = 10,
    seed: int = 0,
    sigma: float | None = None,
    grid: np.ndarray | None = None,
    grid_size: int = 1000,
    distribution: ProbeDistribution = "rademacher",
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> DensityResult:
    r"""Estimate the Hessian's spectral density by stochastic Lanczos quadrature.

    Each run draws a probe, runs :func:`~flatness.curvature.lanczos_kernel.lanczos_tridiagonal`
    for ``steps`` steps with full reorthogonalization (so no spurious "ghost" nodes),
    and turns the eigen-decomposition of :math:`T_m` into a Gauss quadrature rule
    (nodes :math:`\theta_i`, weights :math:`\tau_i = S_{1i}^2`); see the module
    docstring for the maths (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).
    The nodes lie in :math:`[\lambda_{\min}, \lambda_{\max}]`; the extreme ones converge
    to the extreme eigenvalues first.

    Args:
        target: An Objective or a SymmetricOperator.
        steps: Lanczos steps per run (capped at the dimension); costs ``steps`` products
            and ``dim * steps`` memory per run.
        runs: The number of probe vectors (the moments' standard error shrinks like
            ``1/sqrt(runs)``).
        seed: Seed of the probes (drawn on the CPU in float64, device-independent).
        sigma: Gaussian kernel width; default 1% of the nodes' range (or of their
            magnitude when all nodes coincide). The grid spacing should be below it.
        grid: Points where to evaluate the density; default ``grid_size`` points on
            ``[min node - 5 sigma, max node + 5 sigma]``.
        grid_size: The size of the default grid.
        distribution: ``"rademacher"`` or ``"gaussian"`` probes.
        hessian: How to multiply the Hessian when ``target`` is an Objective.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Returns:
        A :class:`DensityResult`.

    Raises:
        ValueError: If ``steps``, ``runs``, ``distribution``, ``sigma`` or
            ``grid_size`` is out of range.
        TypeError: If ``target`` is neither an Objective nor an operator, or Hessian
            options come with an operator.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum(torch.linspace(0.0, 1.0, 50, dtype=torch.float64))
        >>> esd = spectral_density(A, steps=10, runs=4, seed=0)
        >>> esd.nodes.shape, esd.matvecs
        ((4, 10), 40)
        >>> round(float(np.trapezoid(esd.density, esd.grid)), 3)
        1.0
        >>> abs(esd.moments(1) - 0.5) < 3 * esd.moments_stderr(1) + 1e-12
        True
    """
    hessian = resolve_hessian_options(hessian, legacy)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if grid is None and grid_size < 2:
        raise ValueError(f"grid_size must be at least 2, got {grid_size}")
    settings: dict[str, Any] = {
        "steps": steps,
        "runs": runs,
        "seed": seed,
        "sigma": sigma,
        "grid": grid,
        "grid_size": grid_size,
        "distribution": distribution,
        "hessian": hessian,
    }
    with operator_for(target, hessian) as op, Meter(op) as meter:
        nodes, weights, taken = _quadrature(op, min(int(steps), op.dim), runs, distribution, seed)
        sigma, grid, density = _smoothed(nodes, weights, sigma, grid, grid_size)
    for array in (nodes, weights, grid, density):
        array.setflags(write=False)
    return DensityResult(
        sigma=float(sigma),
        steps=int(steps),
        runs=int(runs),
        distribution=distribution,
        dim=op.dim,
        matvecs=meter.matvecs,
        seconds=meter.seconds,
        seed=seed,
        lanczos_steps=tuple(taken),
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=density,
        gradient_equivalents=hessian_gradient_equivalents(op, meter.matvecs),
        choices=operator_choices(op),
        settings=settings,
    )
