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
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch

from flatness.curvature.lanczos import lanczos_tridiagonal
from flatness.curvature.operator import operator_for
from flatness.results import Result, format_float

__all__ = ["DensityResult", "spectral_density"]

DISTRIBUTIONS = ("rademacher", "gaussian")


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
    """

    sigma: float
    steps: int
    runs: int
    distribution: str
    dim: int
    matvecs: int
    seconds: float
    seed: int
    lanczos_steps: tuple[int, ...]
    nodes: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    grid: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)

    def run_moments(self, p: int) -> np.ndarray:
        r"""Per-run estimates :math:`\sum_i \tau_i \theta_i^p` of :math:`\mathrm{tr}(A^p)/n`."""
        return np.sum(self.weights * self.nodes**p, axis=1)

    def moments(self, p: int) -> float:
        r"""The estimate of the normalized moment :math:`\operatorname{tr}(A^p)/n` (mean over runs).

        ``p = 1`` estimates the mean eigenvalue (trace / n), ``p = 2`` the mean squared
        eigenvalue (squared Frobenius norm / n). Each run's value is exact for the
        quadratic form :math:`u^\top A^p u` when ``p <= 2 * lanczos_steps - 1``.
        """
        return float(np.mean(self.run_moments(p)))

    def moments_stderr(self, p: int) -> float:
        """The standard error of :meth:`moments` over runs (``nan`` for one run)."""
        if self.runs < 2:
            return float("nan")
        return float(np.std(self.run_moments(p), ddof=1) / math.sqrt(self.runs))

    def evaluate(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """The smoothed density on another ``grid`` (and ``sigma``), with no new products."""
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


def _probe(n: int, distribution: str, generator: torch.Generator) -> torch.Tensor:
    if distribution == "rademacher":
        signs = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64)
        return signs.to(torch.float64) * 2.0 - 1.0
    return torch.randn(n, generator=generator, dtype=torch.float64)


def spectral_density(
    target: Any,
    *,
    steps: int = 80,
    runs: int = 10,
    seed: int = 0,
    sigma: float | None = None,
    grid: np.ndarray | None = None,
    grid_size: int = 1000,
    distribution: str = "rademacher",
    **hessian_options: Any,
) -> DensityResult:
    r"""Estimate the Hessian's spectral density by stochastic Lanczos quadrature.

    Each run draws a probe, runs :func:`~flatness.curvature.lanczos.lanczos_tridiagonal`
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
        **hessian_options: Passed to the Hessian operator for an Objective.

    Returns:
        A :class:`DensityResult`.

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
    with operator_for(target, **hessian_options) as op:
        n = op.dim
        width = min(int(steps), n)
        gen = torch.Generator().manual_seed(seed)
        counted_from = op.matvecs
        t0 = time.perf_counter()
        nodes = np.zeros((runs, width))
        weights = np.zeros((runs, width))
        taken: list[int] = []
        for r in range(runs):
            v = _probe(n, distribution, gen).to(device=op.device, dtype=op.dtype)
            tri = lanczos_tridiagonal(op, v, width, reorthogonalize=True)
            m = tri.alphas.size
            theta, S = scipy.linalg.eigh_tridiagonal(tri.alphas, tri.betas)
            tau = S[0, :] ** 2
            nodes[r, :m] = theta
            nodes[r, m:] = theta[-1]
            weights[r, :m] = tau / tau.sum()
            taken.append(m)
            del tri
        matvecs = op.matvecs - counted_from
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        spread = hi - lo if hi > lo else max(abs(lo), abs(hi))
        sigma = 0.01 * spread if spread > 0 else 0.01
    if grid is None:
        grid = np.linspace(lo - 5.0 * sigma, hi + 5.0 * sigma, int(grid_size))
    grid = np.array(grid, dtype=np.float64)  # a copy: it is frozen below
    density = gaussian_smoothing(grid, nodes, weights, sigma)
    seconds = time.perf_counter() - t0
    for array in (nodes, weights, grid, density):
        array.setflags(write=False)
    return DensityResult(
        sigma=float(sigma),
        steps=int(steps),
        runs=int(runs),
        distribution=distribution,
        dim=n,
        matvecs=matvecs,
        seconds=seconds,
        seed=seed,
        lanczos_steps=tuple(taken),
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=density,
    )
