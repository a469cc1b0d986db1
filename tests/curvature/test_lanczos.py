"""Tests of the Lanczos core: tridiagonalization, thick restart, the deflated driver."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatness.curvature.lanczos import (
    default_basis_size,
    lanczos_eigenpairs,
    lanczos_tridiagonal,
    order_by_which,
    residual_bounds,
    thick_restart_lanczos,
)
from flatness.curvature.operator import DenseOperator

F64 = torch.float64


def _spectrum(*top: float, bulk: int = 100, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor(top, dtype=F64), torch.rand(bulk, generator=gen, dtype=F64)])


def _start(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _tridiagonal(tri) -> np.ndarray:
    return np.diag(tri.alphas) + np.diag(tri.betas, 1) + np.diag(tri.betas, -1)


class TestTridiagonal:
    def test_lanczos_relation_and_orthonormal_basis(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(5.0, 4.0, bulk=150))
        tri = lanczos_tridiagonal(A, _start(152), 60)
        V = tri.basis
        assert V.shape == (152, 60) and A.matvecs == 60 and not tri.breakdown
        torch.testing.assert_close(V.T @ V, torch.eye(60, dtype=F64), atol=1e-12, rtol=0)
        projected = (V.T @ A.matrix @ V).numpy()
        np.testing.assert_allclose(projected, _tridiagonal(tri), atol=1e-12)
        assert np.all(tri.betas > 0)

    def test_extreme_ritz_values_converge_first(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(5.0, 4.0, bulk=150))
        tri = lanczos_tridiagonal(A, _start(152), 40)
        theta = np.linalg.eigvalsh(_tridiagonal(tri))
        np.testing.assert_allclose(theta[-2:], [4.0, 5.0], rtol=1e-10)

    @pytest.mark.parametrize("n", [1, 2, 5])
    def test_full_steps_give_the_exact_spectrum(self, n: int) -> None:
        eigs = torch.linspace(-1.0, 2.0, n, dtype=F64)
        A = DenseOperator.from_spectrum(eigs, seed=3)
        tri = lanczos_tridiagonal(A, _start(n), steps=n + 7)  # capped at n
        assert tri.alphas.size == n and tri.betas.size == n - 1 and A.matvecs == n
        np.testing.assert_allclose(np.linalg.eigvalsh(_tridiagonal(tri)), eigs.numpy(), atol=1e-13)

    def test_breakdown_on_a_low_rank_operator_stops_early(self) -> None:
        eigs = torch.zeros(50, dtype=F64)
        eigs[:3] = torch.tensor([3.0, 2.0, -1.0])
        A = DenseOperator.from_spectrum(eigs)
        tri = lanczos_tridiagonal(A, _start(50), 30)
        # K(A, v) = span{v, u1, u2, u3}: four directions, then beta ~ 0.
        assert tri.breakdown and tri.alphas.size == 4 and A.matvecs == 4
        assert tri.residual_norm < 1e-12
        np.testing.assert_allclose(
            np.linalg.eigvalsh(_tridiagonal(tri)), [-1.0, 0.0, 2.0, 3.0], atol=1e-12
        )

    def test_without_reorthogonalization_early_steps_agree(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(5.0, bulk=60))
        full = lanczos_tridiagonal(A, _start(61), 8)
        plain = lanczos_tridiagonal(A, _start(61), 8, reorthogonalize=False)
        np.testing.assert_allclose(plain.alphas, full.alphas, rtol=1e-8)
        np.testing.assert_allclose(plain.betas, full.betas, rtol=1e-8)

    def test_float32(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(5.0, bulk=80), dtype=torch.float32)
        tri = lanczos_tridiagonal(A, _start(81).float(), 30)
        assert tri.basis.dtype == torch.float32
        eye = torch.eye(30, dtype=torch.float32)
        torch.testing.assert_close(tri.basis.T @ tri.basis, eye, atol=1e-5, rtol=0)
        assert abs(np.linalg.eigvalsh(_tridiagonal(tri))[-1] - 5.0) < 1e-4

    def test_invalid_arguments(self) -> None:
        A = DenseOperator(torch.eye(3, dtype=F64))
        with pytest.raises(ValueError, match="steps"):
            lanczos_tridiagonal(A, torch.ones(3, dtype=F64), 0)
        with pytest.raises(ValueError, match="nonzero"):
            lanczos_tridiagonal(A, torch.zeros(3, dtype=F64), 2)
        with pytest.raises(ValueError, match="shape"):
            lanczos_tridiagonal(A, torch.ones(4, dtype=F64), 2)


class TestThickRestart:
    def test_restarts_and_converges(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(10.0, 9.0, 8.0, bulk=200))
        ritz = thick_restart_lanczos(A, _start(203), 3, tol=1e-10, basis_size=8)
        assert ritz.restarts > 0 and ritz.steps == A.matvecs and bool(ritz.converged.all())
        np.testing.assert_allclose(ritz.values, [10.0, 9.0, 8.0], rtol=1e-10)
        X = ritz.vectors
        true = torch.linalg.vector_norm(A.matrix @ X - X * torch.from_numpy(ritz.values), dim=0)
        # the residual estimate |beta s_m| is the true residual up to round-off
        np.testing.assert_allclose(ritz.residuals, true.numpy(), rtol=1e-3, atol=1e-13)

    def test_locked_vectors_are_deflated(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(10.0, 9.0, bulk=100))
        top = thick_restart_lanczos(A, _start(102), 1, tol=1e-12)
        second = thick_restart_lanczos(A, _start(102, 1), 1, tol=1e-12, locked=top.vectors)
        assert second.values[0] == pytest.approx(9.0, rel=1e-10)
        assert abs(float(top.vectors[:, 0] @ second.vectors[:, 0])) < 1e-10

    def test_budget_smaller_than_k_pads_with_nan(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(10.0, bulk=50))
        ritz = thick_restart_lanczos(A, _start(51), 4, max_matvecs=2)
        assert A.matvecs == 2 and ritz.steps == 2
        assert np.isnan(ritz.values[2:]).all() and np.isinf(ritz.residuals[2:]).all()
        assert not ritz.converged.any()

    def test_invalid_arguments(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(bulk=30))
        with pytest.raises(ValueError, match="basis_size"):
            thick_restart_lanczos(A, _start(30), 3, basis_size=4)
        with pytest.raises(ValueError, match="k must"):
            thick_restart_lanczos(A, _start(30), 31)
        with pytest.raises(ValueError, match="which"):
            thick_restart_lanczos(A, _start(30), 1, which="BE")


class TestDriver:
    def test_triple_eigenvalue_is_found_three_times(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(5.0, 5.0, 5.0, 4.0, bulk=150))
        pairs = lanczos_eigenpairs(A, 4, tol=1e-10)
        np.testing.assert_allclose(pairs.values, [5.0, 5.0, 5.0, 4.0], rtol=1e-10)
        assert pairs.multiplicity_checked and bool(pairs.converged.all())
        assert pairs.steps == A.matvecs

    def test_without_the_check_the_result_says_so(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(5.0, 5.0, 5.0, bulk=150))
        pairs = lanczos_eigenpairs(A, 3, tol=1e-8, multiplicity_check=False)
        # every reported value is still certified by its residual, but not its completeness
        assert bool(pairs.converged.all()) and not pairs.multiplicity_checked
        assert pairs.values[0] == pytest.approx(5.0)

    def test_verification_measures_residuals(self) -> None:
        A = DenseOperator.from_spectrum(_spectrum(3.0, -4.0, bulk=80))
        pairs = lanczos_eigenpairs(A, 2, which="LM", tol=1e-9)
        X = pairs.vectors
        true = torch.linalg.vector_norm(A.matrix @ X - X * torch.from_numpy(pairs.values), dim=0)
        np.testing.assert_allclose(pairs.residuals, true.numpy(), rtol=1e-10, atol=1e-15)


def test_order_by_which() -> None:
    values = np.array([1.0, -3.0, 2.0, 0.5])
    assert order_by_which(values, "LA").tolist() == [2, 0, 3, 1]
    assert order_by_which(values, "SA").tolist() == [1, 3, 0, 2]
    assert order_by_which(values, "LM").tolist() == [1, 2, 0, 3]


def test_residual_bounds_have_a_roundoff_floor() -> None:
    bounds = residual_bounds(np.array([10.0, 0.0]), 1e-4, 10.0, torch.float64)
    assert bounds[0] == pytest.approx(1e-3)
    assert bounds[1] == pytest.approx(100 * 2.220446049250313e-16 * 10.0)


def test_default_basis_size() -> None:
    assert default_basis_size(1, 1000) == 20
    assert default_basis_size(10, 1000) == 30
    assert default_basis_size(3, 7) == 7
