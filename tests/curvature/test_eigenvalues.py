"""Tests of hessian_eigenvalues and power_iteration against known spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatness.curvature.eigenvalues import EigenResult, hessian_eigenvalues, power_iteration
from flatness.curvature.operator import DenseOperator

F64 = torch.float64


def _bulk(n: int, lo: float = 0.0, hi: float = 1.0, seed: int = 0) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(n, generator=gen, dtype=F64)).tolist()


def _low_rank() -> list[float]:
    return [3.0, 2.0, -1.0] + [0.0] * 197


def _reference(A: DenseOperator, k: int, which: str) -> np.ndarray:
    lam = torch.linalg.eigvalsh(A.matrix.double()).numpy()
    key = {"LA": -lam, "SA": lam, "LM": -np.abs(lam)}[which]
    return lam[np.argsort(key, kind="stable")][:k]


def _measured_residuals(A: DenseOperator, res: EigenResult) -> np.ndarray:
    assert res.eigenvectors is not None
    X = res.eigenvectors.double()
    theta = torch.tensor(res.eigenvalues, dtype=F64)
    return torch.linalg.vector_norm(A.matrix.double() @ X - X * theta, dim=0).numpy()


def _assert_agrees(A: DenseOperator, res: EigenResult, rtol: float = 1e-6) -> None:
    scale = float(torch.linalg.matrix_norm(A.matrix.double(), ord=2))
    want = _reference(A, res.k, res.which)
    np.testing.assert_allclose(res.eigenvalues, want, rtol=rtol, atol=rtol * 1e-6 * scale)
    # the reported residuals are the truth, and they certify the values
    np.testing.assert_allclose(
        res.residuals, _measured_residuals(A, res), rtol=1e-6, atol=1e-12 * scale
    )
    assert res.all_converged and len(res.eigenvalues) == res.k


CASES = {
    "top5": ([10.0, 8.0, 6.0, 5.0, 4.5, *_bulk(195)], 5, "LA"),
    "bottom3": ([-3.0, -2.0, -1.5, *_bulk(197)], 3, "SA"),
    "LM indefinite": ([-7.0, 6.0, -5.0, 4.0, *_bulk(196, -1.0, 1.0)], 4, "LM"),
    "cluster 1e-6": ([5.0, 5.0 + 1e-6, 4.0, *_bulk(197)], 3, "LA"),
    "repeated": ([5.0, 5.0, 5.0, 3.0, *_bulk(196)], 4, "LA"),
    "repeated bottom": ([-2.0, -2.0, *_bulk(150)], 3, "SA"),
    "low rank LA": (_low_rank(), 5, "LA"),
    "low rank SA": (_low_rank(), 3, "SA"),
    "low rank LM": (_low_rank(), 4, "LM"),
    "dim 1": ([2.5], 1, "LA"),
    "dim 2": ([-1.0, 3.0], 2, "SA"),
    "dim 5": ([0.5, -2.0, 1.0, 4.0, 3.0], 3, "LM"),
    "dim 5 all": ([0.5, -2.0, 1.0, 4.0, 3.0], 5, "LA"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_known_spectra(case: str) -> None:
    eigs, k, which = CASES[case]
    A = DenseOperator.from_spectrum(eigs, seed=1)
    res = hessian_eigenvalues(A, k=k, which=which, tol=1e-10, return_eigenvectors=True)
    _assert_agrees(A, res)
    assert res.matvecs == A.matvecs and res.method == "lanczos" and res.which == which
    X = res.eigenvectors
    assert X is not None and X.shape == (len(eigs), k)
    torch.testing.assert_close(X.T @ X, torch.eye(k, dtype=F64), atol=1e-8, rtol=0)


def test_small_basis_restarts() -> None:
    A = DenseOperator.from_spectrum([10.0, 9.5, 9.0, *_bulk(150)])
    res = hessian_eigenvalues(A, k=3, tol=1e-10, basis_size=6, return_eigenvectors=True)
    _assert_agrees(A, res)
    assert res.restarts > 0


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
    which=st.sampled_from(["LA", "SA", "LM"]),
    k=st.integers(1, 4),
    basis_extra=st.one_of(st.none(), st.integers(2, 5)),
    rank=st.one_of(st.none(), st.integers(1, 4)),
)
def test_random_symmetric_matrices(
    n: int, seed: int, which: str, k: int, basis_extra: int | None, rank: int | None
) -> None:
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=gen, dtype=F64)
    if rank is not None:  # low rank: many zero eigenvalues
        rank = min(rank, n)
        B = B[:, :rank] @ torch.randn(rank, n, generator=gen, dtype=F64)
    A = DenseOperator(B + B.T)
    k = min(k, n)
    basis = None if basis_extra is None else k + basis_extra
    res = hessian_eigenvalues(A, k=k, which=which, tol=1e-10, basis_size=basis, seed=seed)
    scale = float(torch.linalg.matrix_norm(A.matrix, ord=2))
    assert res.all_converged
    np.testing.assert_allclose(
        res.eigenvalues, _reference(A, k, which), rtol=1e-6, atol=1e-9 * (scale + 1.0)
    )


def test_lm_with_a_tiny_basis_keeps_both_ends() -> None:
    # Keeping only the largest-magnitude Ritz vector at a restart would filter out the
    # other end of the spectrum and converge, certified, to the wrong eigenvalue (40.8).
    gen = torch.Generator().manual_seed(123568)
    B = torch.randn(31, 31, generator=gen, dtype=F64)
    B = B[:, :2] @ torch.randn(2, 31, generator=gen, dtype=F64)
    A = DenseOperator(B + B.T)
    res = hessian_eigenvalues(A, k=1, which="LM", tol=1e-10, basis_size=3, seed=123568)
    assert res.restarts > 0
    np.testing.assert_allclose(res.eigenvalues, _reference(A, 1, "LM"), rtol=1e-8)


def test_non_convergence_is_reported() -> None:
    A = DenseOperator.from_spectrum((torch.linspace(0.0, 1.0, 300, dtype=F64) ** 0.2).tolist())
    res = hessian_eigenvalues(A, k=3, tol=1e-10, max_matvecs=15, return_eigenvectors=True)
    assert res.matvecs <= 15
    assert not any(res.converged) and not res.all_converged
    assert all(r > 1e-10 * abs(v) for v, r in zip(res.eigenvalues, res.residuals, strict=True))
    np.testing.assert_allclose(res.residuals, _measured_residuals(A, res), rtol=1e-6)
    assert "NOT all converged" in str(res)
    assert not res.multiplicity_checked


def test_budget_below_k_gives_nan_flagged() -> None:
    A = DenseOperator.from_spectrum(_bulk(40))
    res = hessian_eigenvalues(A, k=4, max_matvecs=2)
    assert np.isnan(res.eigenvalues[-1]) and res.converged == (False,) * 4
    assert res.matvecs == 2


def test_determinism_and_seed() -> None:
    eigs = [4.0, 3.0, -3.5, *_bulk(100, -1.0, 1.0)]
    runs = [
        hessian_eigenvalues(
            DenseOperator.from_spectrum(eigs), k=3, which="LM", seed=s, return_eigenvectors=True
        )
        for s in (7, 7, 8)
    ]
    a, b, c = runs
    assert a.eigenvalues == b.eigenvalues and a.residuals == b.residuals
    assert a.matvecs == b.matvecs and a.eigenvectors is not None and b.eigenvectors is not None
    assert torch.equal(a.eigenvectors, b.eigenvectors)
    np.testing.assert_allclose(c.eigenvalues, a.eigenvalues, rtol=1e-4)


def test_float32_operator() -> None:
    eigs = [10.0, 7.0, 5.0, *_bulk(300, -1.0, 1.0)]
    A = DenseOperator.from_spectrum(eigs, dtype=torch.float32)
    res = hessian_eigenvalues(A, k=3, tol=1e-4, return_eigenvectors=True)
    assert res.all_converged
    assert res.eigenvectors is not None and res.eigenvectors.dtype == torch.float32
    np.testing.assert_allclose(res.eigenvalues, [10.0, 7.0, 5.0], rtol=1e-4)
    np.testing.assert_allclose(res.residuals, _measured_residuals(A, res), rtol=0.05, atol=1e-5)


def test_result_prints_and_converts() -> None:
    A = DenseOperator.from_spectrum([3.0, 2.0, *_bulk(20)])
    res = hessian_eigenvalues(A, k=2, return_eigenvectors=True)
    assert repr(res).startswith("EigenResult(method='lanczos', which='LA', k=2")
    assert "eigenvectors" not in repr(res) and "converged" in str(res)
    d = res.to_dict(include_arrays=False)
    assert "eigenvectors" not in d and d["k"] == 2 and isinstance(d["eigenvalues"], list)
    assert len(res.to_dict()["eigenvectors"]) == 22
    assert res.relative_residuals[0] == pytest.approx(res.residuals[0] / res.eigenvalues[0])
    with pytest.raises(AttributeError):
        res.k = 3  # type: ignore[misc]


def test_invalid_arguments() -> None:
    A = DenseOperator.from_spectrum(_bulk(10))
    with pytest.raises(ValueError, match="which"):
        hessian_eigenvalues(A, which="largest")
    with pytest.raises(ValueError, match="k="):
        hessian_eigenvalues(A, k=11)
    with pytest.raises(ValueError, match="tol"):
        hessian_eigenvalues(A, tol=0.0)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="Hessian options"):
        hessian_eigenvalues(A, strategy="auto")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        hessian_eigenvalues("not an operator")


class TestPowerIteration:
    def test_matches_a_well_separated_spectrum(self) -> None:
        A = DenseOperator.from_spectrum([10.0, -5.0, *_bulk(60, -0.5, 0.5)])
        res = power_iteration(A, k=2, tol=1e-12, maxiter=500, return_eigenvectors=True)
        np.testing.assert_allclose(res.eigenvalues, [10.0, -5.0], rtol=1e-6)
        np.testing.assert_allclose(res.residuals, _measured_residuals(A, res), rtol=1e-6)
        assert res.which == "LM" and res.method == "power"
        assert res.matvecs == res.iterations + 2 == A.matvecs

    def test_converged_when_the_residual_is_small(self) -> None:
        A = DenseOperator.from_spectrum([100.0, *_bulk(50)])
        res = power_iteration(A, tol=1e-3)
        assert res.all_converged and res.eigenvalues[0] == pytest.approx(100.0, rel=1e-6)
        assert res.residuals[0] <= 1e-3 * 100.0

    def test_close_top_eigenvalues_stop_early_and_say_so(self) -> None:
        # PyHessian's rule stops once the Rayleigh quotient changes by < tol relative,
        # which happens at once when the top of the spectrum is a tight cluster.
        eigs = (10.0 - torch.linspace(0.0, 0.5, 100, dtype=F64)).tolist()
        A = DenseOperator.from_spectrum(eigs)
        res = power_iteration(A, tol=1e-3, maxiter=100, return_eigenvectors=True)
        assert res.iterations < 10
        assert not res.all_converged and res.residuals[0] > 1e-3 * abs(res.eigenvalues[0])
        np.testing.assert_allclose(res.residuals, _measured_residuals(A, res), rtol=1e-6)
        lanczos = hessian_eigenvalues(A, tol=1e-8)
        assert lanczos.all_converged and lanczos.eigenvalues[0] == pytest.approx(10.0)

    def test_null_space_and_determinism(self) -> None:
        A = DenseOperator.from_spectrum([2.0, 0.0, 0.0])
        a = power_iteration(A, k=3, maxiter=50)
        b = power_iteration(A, k=3, maxiter=50)
        assert a.eigenvalues == b.eigenvalues and a.residuals == b.residuals
        assert a.eigenvalues[0] == pytest.approx(2.0) and abs(a.eigenvalues[2]) < 1e-12

    def test_invalid_arguments(self) -> None:
        A = DenseOperator.from_spectrum([1.0, 2.0])
        with pytest.raises(ValueError, match="maxiter"):
            power_iteration(A, maxiter=0)
        with pytest.raises(ValueError, match="k="):
            power_iteration(A, k=3)


def test_objective_smoke() -> None:
    """Through an Objective on a tiny MLP, against the dense float64 Hessian."""
    objective = pytest.importorskip("flatness.curvature.objective")
    pytest.importorskip("flatness.curvature.hessian")
    from tests.conftest import dense_hessian, make_data, make_net

    net = make_net("mlp")
    X, y = make_data()
    H = dense_hessian(net, X, y)
    obj = objective.Objective(net, (X, y), batch_size=8)
    res = hessian_eigenvalues(obj, k=3, which="LA", tol=1e-9)
    lam = torch.linalg.eigvalsh(H).flip(0)[:3].numpy()
    np.testing.assert_allclose(res.eigenvalues, lam, rtol=1e-6, atol=1e-10)
    assert res.all_converged and res.matvecs > 0
    low = hessian_eigenvalues(obj, k=1, which="SA", tol=1e-6)
    assert low.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(H)[0]), abs=1e-8)
