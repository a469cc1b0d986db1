"""Tests of the Lanczos kernel: tridiagonalization, and the warm start vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatness.curvature.lanczos import lanczos_tridiagonal, start_vector
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


def test_start_vector_of_a_block_is_its_column_sum() -> None:
    A = DenseOperator(torch.eye(4, dtype=F64))
    block = torch.arange(8.0, dtype=F64).reshape(4, 2)
    torch.testing.assert_close(start_vector(block, A), block.sum(dim=1))
    torch.testing.assert_close(start_vector(block[:, 0], A), block[:, 0])
    with pytest.raises(ValueError, match="shape"):
        start_vector(torch.ones(3, dtype=F64), A)
    with pytest.raises(ValueError, match="nonzero"):
        start_vector(torch.full((4,), float("nan"), dtype=F64), A)
