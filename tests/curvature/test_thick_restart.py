"""Tests of the thick-restart Lanczos eigensolver and its deflated, verified driver."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatness.curvature.operator import DenseOperator
from flatness.curvature.thick_restart import (
    default_basis_size,
    lanczos_eigenpairs,
    order_by_which,
    residual_bounds,
    thick_restart_lanczos,
)

F64 = torch.float64


def _spectrum(*top: float, bulk: int = 100, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor(top, dtype=F64), torch.rand(bulk, generator=gen, dtype=F64)])


def _start(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


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
    # 2k + 10: top-1 holds 12 vectors, not 20 (issue 19 item 2)
    assert default_basis_size(1, 1000) == 12
    assert default_basis_size(10, 1000) == 30
    assert default_basis_size(3, 7) == 7
