"""Tests of stochastic Lanczos quadrature (spectral_density)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatness.curvature.density import DensityResult, gaussian_smoothing, spectral_density
from flatness.curvature.operator import DenseOperator

F64 = torch.float64


def _eigs(n: int = 120, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    bulk = torch.randn(n - 3, generator=gen, dtype=F64) * 0.3
    return torch.cat([torch.tensor([6.0, 4.0, -2.0], dtype=F64), bulk])


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_moments_agree_with_exact_traces(distribution: str) -> None:
    lam = _eigs()
    A = DenseOperator.from_spectrum(lam)
    esd = spectral_density(A, steps=15, runs=12, seed=3, distribution=distribution)
    for p in (1, 2):
        exact = float(torch.mean(lam**p))
        assert abs(esd.moments(p) - exact) <= 4 * esd.moments_stderr(p) + 1e-12
    assert esd.matvecs == A.matvecs == 12 * 15
    assert esd.nodes.shape == esd.weights.shape == (12, 15)


def test_gauss_quadrature_is_exact_up_to_degree_2m_minus_1() -> None:
    # With a diagonal A and Rademacher probes, u^T A^p u = tr(A^p)/n for every probe, so
    # each run's quadrature must reproduce the normalized moments up to p = 2 m - 1.
    lam = torch.linspace(-1.0, 2.0, 60, dtype=F64) ** 3
    A = DenseOperator(torch.diag(lam))
    m = 6
    esd = spectral_density(A, steps=m, runs=3, seed=0)
    for p in range(2 * m):
        np.testing.assert_allclose(esd.run_moments(p), float(torch.mean(lam**p)), rtol=1e-9)
    # degree 2m is not integrated exactly any more
    assert abs(esd.run_moments(2 * m)[0] - float(torch.mean(lam ** (2 * m)))) > 1e-6


def test_steps_at_least_dim_recover_the_spectrum() -> None:
    lam = torch.tensor([-1.5, -0.5, 0.25, 1.0, 2.0, 3.0, 3.5, 5.0], dtype=F64)
    A = DenseOperator.from_spectrum(lam, seed=2)
    esd = spectral_density(A, steps=20, runs=3, seed=1)
    assert esd.nodes.shape == (3, 8) and esd.lanczos_steps == (8, 8, 8)
    for r in range(3):
        np.testing.assert_allclose(np.sort(esd.nodes[r]), lam.numpy(), atol=1e-12)
    np.testing.assert_allclose(esd.weights.sum(axis=1), 1.0, rtol=1e-14)


def test_breakdown_pads_with_zero_weights() -> None:
    lam = torch.zeros(60, dtype=F64)
    lam[:3] = torch.tensor([3.0, 1.0, -2.0])
    A = DenseOperator.from_spectrum(lam)
    esd = spectral_density(A, steps=10, runs=4, seed=0)
    assert esd.lanczos_steps == (4, 4, 4, 4) and esd.matvecs == 16
    assert np.all(esd.weights[:, 4:] == 0.0)
    np.testing.assert_allclose(np.sort(esd.nodes[0, :4]), [-2.0, 0.0, 1.0, 3.0], atol=1e-12)
    assert esd.support == pytest.approx((-2.0, 3.0))


def test_nodes_in_spectrum_weights_normalized_density_integrates() -> None:
    lam = _eigs(200)
    A = DenseOperator.from_spectrum(lam)
    esd = spectral_density(A, steps=25, runs=5, seed=0)
    tiny = 1e-10
    assert esd.nodes.min() >= float(lam.min()) - tiny
    assert esd.nodes.max() <= float(lam.max()) + tiny
    assert np.all(esd.weights >= 0)
    np.testing.assert_allclose(esd.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert float(np.trapezoid(esd.density, esd.grid)) == pytest.approx(1.0, abs=1e-3)
    # the extreme nodes converge to the extreme eigenvalues
    assert esd.nodes.max() == pytest.approx(6.0, rel=1e-8)
    assert esd.grid[0] < esd.nodes.min() and esd.grid[-1] > esd.nodes.max()
    assert esd.sigma == pytest.approx(0.01 * (esd.nodes.max() - esd.nodes.min()))


def test_reproducible_with_a_seed() -> None:
    A = DenseOperator.from_spectrum(_eigs(80))
    a = spectral_density(A, steps=10, runs=3, seed=5)
    b = spectral_density(A, steps=10, runs=3, seed=5)
    c = spectral_density(A, steps=10, runs=3, seed=6)
    for name in ("nodes", "weights", "grid", "density"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.nodes, c.nodes)


def test_user_grid_and_sigma() -> None:
    A = DenseOperator.from_spectrum(_eigs(50))
    grid = np.linspace(-3.0, 7.0, 501)
    esd = spectral_density(A, steps=8, runs=2, sigma=0.1, grid=grid)
    assert esd.sigma == 0.1 and np.array_equal(esd.grid, grid) and grid.flags.writeable
    np.testing.assert_allclose(esd.evaluate(grid), esd.density)
    wider = esd.evaluate(grid, sigma=0.3)
    assert float(np.trapezoid(wider, grid)) == pytest.approx(1.0, abs=1e-3)


def test_float32_operator() -> None:
    lam = _eigs(100)
    A = DenseOperator.from_spectrum(lam, dtype=torch.float32)
    esd = spectral_density(A, steps=20, runs=8, seed=0)
    assert abs(esd.moments(1) - float(lam.mean())) <= 4 * esd.moments_stderr(1) + 1e-5
    np.testing.assert_allclose(esd.weights.sum(axis=1), 1.0, rtol=1e-6)
    assert esd.nodes.max() == pytest.approx(6.0, rel=1e-4)


def test_result_prints_and_converts() -> None:
    esd = spectral_density(DenseOperator.from_spectrum(_eigs(30)), steps=5, runs=2)
    assert isinstance(esd, DensityResult)
    text = repr(esd)
    assert text.startswith("DensityResult(dim=30, runs=2, steps=5") and "array" not in text
    short = esd.to_dict(include_arrays=False)
    assert "nodes" not in short and short["matvecs"] == 10
    assert len(esd.to_dict()["nodes"]) == 2
    assert np.isnan(spectral_density(DenseOperator.from_spectrum([1.0, 2.0]), runs=1)
                    .moments_stderr(1))  # fmt: skip
    with pytest.raises(ValueError):
        esd.nodes[0, 0] = 1.0


def test_gaussian_smoothing_constant_spectrum() -> None:
    esd = spectral_density(DenseOperator(torch.eye(5, dtype=F64) * 2.0), steps=3, runs=2)
    assert esd.lanczos_steps == (1, 1) and esd.sigma == pytest.approx(0.02)
    assert float(np.trapezoid(esd.density, esd.grid)) == pytest.approx(1.0, abs=1e-3)
    phi = gaussian_smoothing(np.array([0.0]), np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]]), 1.0)
    assert phi[0] == pytest.approx(0.5 * (1 + np.exp(-0.5)) / np.sqrt(2 * np.pi))


def test_invalid_arguments() -> None:
    A = DenseOperator.from_spectrum([1.0, 2.0, 3.0])
    for kwargs in ({"steps": 0}, {"runs": 0}, {"distribution": "normal"}, {"sigma": -1.0}):
        with pytest.raises(ValueError):
            spectral_density(A, **kwargs)  # type: ignore[arg-type]
