"""Top-k at the Lanczos floor (issue 19 items 1–2): the multiplicity search only where
the values suggest it, honest flags where it did not run, the basis size rule and where
the basis lives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import flatness as fl
from flatness.curvature.lanczos_basis import default_basis_size, plan_basis, restart_in_place
from flatness.curvature.lanczos_kernel import reorthogonalize
from flatness.curvature.operator import DenseOperator
from flatness.curvature.ritz import suggests_cluster
from flatness.curvature.thick_restart import lanczos_eigenpairs, thick_restart_lanczos

F64 = torch.float64
CPU = torch.device("cpu")


def _spectrum(*top: float, bulk: int = 150, seed: int = 0) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    return [*top, *torch.rand(bulk, generator=gen, dtype=F64).tolist()]


def _floor(A: DenseOperator, k: int, tol: float, seed: int = 0) -> int:
    """Products of plain Lanczos (no restart, no check, no verification), same start."""
    start = torch.randn(A.dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return thick_restart_lanczos(A, start, k, tol=tol, basis_size=A.dim).steps


# ------------------------------------------------------------ item 1: the multiplicity check
def test_cluster_suggestion() -> None:
    eps = torch.float64
    assert suggests_cluster(np.array([5.0, 5.0 - 1e-9]), np.nan, 1e-4, 5.0, eps)
    assert not suggests_cluster(np.array([5.0, 4.0, 3.0]), 2.0, 1e-4, 5.0, eps)
    assert suggests_cluster(np.array([5.0, 4.0]), 4.0 - 1e-3, 1e-4, 5.0, eps)  # the next one
    assert not suggests_cluster(np.array([5.0]), np.nan, 1e-4, 5.0, eps)


def test_separated_top_k_spends_the_floor_plus_verification() -> None:
    A = DenseOperator.from_spectrum(_spectrum(10.0, 8.0, 6.0, 5.0, 4.5), seed=1)
    pairs = lanczos_eigenpairs(A, 5, tol=1e-8)
    # no cluster: no search, and the result does not vouch for completeness
    assert not pairs.multiplicity_checked and bool(pairs.converged.all())
    np.testing.assert_allclose(pairs.values, [10.0, 8.0, 6.0, 5.0, 4.5], rtol=1e-8)
    assert pairs.steps <= _floor(A, 5, 1e-8) + 5  # the floor, plus one block product


def test_a_found_cluster_triggers_the_search() -> None:
    A = DenseOperator.from_spectrum(_spectrum(5.0, 5.0, 5.0, 4.0), seed=1)
    pairs = lanczos_eigenpairs(A, 4, tol=1e-10)
    np.testing.assert_allclose(pairs.values, [5.0, 5.0, 5.0, 4.0], rtol=1e-10)
    assert pairs.multiplicity_checked


@pytest.mark.parametrize("check", [True, "always"])
def test_repeated_eigenvalues_are_all_found_or_the_result_says_so(check: bool | str) -> None:
    # a double top eigenvalue that the main run cannot see twice before it converges
    A = DenseOperator.from_spectrum(_spectrum(9.0, 9.0, 3.0, bulk=60), seed=2)
    pairs = lanczos_eigenpairs(A, 2, tol=1e-4, multiplicity_check=check)  # type: ignore[arg-type]
    found_both = np.allclose(pairs.values, [9.0, 9.0], rtol=1e-4)
    assert found_both or not pairs.multiplicity_checked
    if check == "always":
        assert found_both and pairs.multiplicity_checked


def test_an_invariant_krylov_space_triggers_the_search() -> None:
    # rank 3: the start vector reaches one null direction; the second zero needs a search
    A = DenseOperator.from_spectrum([3.0, 2.0, -1.0] + [0.0] * 60, seed=1)
    pairs = lanczos_eigenpairs(A, 3, which="SA", tol=1e-10)
    np.testing.assert_allclose(pairs.values, [-1.0, 0.0, 0.0], atol=1e-10)
    assert pairs.multiplicity_checked


def test_invalid_multiplicity_check() -> None:
    A = DenseOperator.from_spectrum(_spectrum(2.0, bulk=10))
    with pytest.raises(ValueError, match="multiplicity_check"):
        lanczos_eigenpairs(A, 2, multiplicity_check="sometimes")  # type: ignore[arg-type]


def test_residuals_measured_from_the_kept_products_cost_no_product() -> None:
    A = DenseOperator.from_spectrum(_spectrum(10.0, 8.0, 6.0, bulk=200), seed=3)
    kept = lanczos_eigenpairs(A, 3, tol=1e-10, basis_size=8)  # restarts rotate W too
    fresh = lanczos_eigenpairs(A, 3, tol=1e-10, basis_size=8, keep_products=False)
    assert kept.restarts > 0 and kept.verified and fresh.verified
    assert kept.verification_matvecs == 0 and fresh.verification_matvecs == 3
    assert kept.steps == fresh.steps - 3
    X = kept.vectors
    true = torch.linalg.vector_norm(A.matrix @ X - X * torch.from_numpy(kept.values), dim=0)
    np.testing.assert_allclose(kept.residuals, true.numpy(), rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(kept.values, fresh.values, rtol=1e-12)


# ---------------------------------------------------------------- item 2: the basis
def test_basis_size_rule() -> None:
    assert [default_basis_size(k, 10_000) for k in (1, 2, 5, 10)] == [12, 14, 20, 30]
    f32 = torch.float32
    per = 1000 * 4
    free = plan_basis(1, 1000, dtype=f32, device=CPU)
    assert (free.size, free.capped, free.graph_budget) == (12, False, None)
    cut = plan_basis(1, 1000, dtype=f32, device=CPU, budget=20 * per)  # half holds 10 vectors
    assert (cut.size, cut.capped, cut.nbytes, cut.graph_budget) == (9, True, 10 * per, 10 * per)
    least = plan_basis(3, 1000, dtype=f32, device=CPU, budget=0)
    assert least.size == 5 and least.capped  # k + 2, the least a thick restart works with
    kept = plan_basis(1, 1000, dtype=f32, device=CPU, budget=20 * per, cut=False)
    assert kept.size == 12 and kept.graph_budget == 20 * per - 13 * per
    top5 = plan_basis(5, 1000, dtype=f32, device=CPU)
    assert top5.products and top5.nbytes == (2 * 20 + 5) * per  # W = AV beside V
    tight5 = plan_basis(5, 1000, dtype=f32, device=CPU, budget=60 * per)
    assert tight5.size == 20 and not tight5.products  # V fits in half, V and W do not
    given = plan_basis(1, 1000, dtype=f32, device=CPU, budget=0, basis_size=7)
    assert given.size == 7 and not given.capped


def test_basis_device_rule() -> None:
    gpu = torch.device("cuda", 0)  # only planned here: nothing is allocated
    per = 1000 * 4
    roomy = plan_basis(1, 1000, dtype=torch.float32, device=gpu, budget=1000 * per)
    assert roomy.device == gpu and roomy.graph_budget == 1000 * per - 13 * per
    tight = plan_basis(1, 1000, dtype=torch.float32, device=gpu, budget=10 * per, cut=False)
    assert tight.device == CPU and tight.size == 12 and tight.graph_budget == 10 * per
    host = plan_basis(1, 1000, dtype=torch.float32, device=gpu, budget=1000 * per,
                      basis_device="cpu")  # fmt: skip
    assert host.device == CPU and host.graph_budget == 1000 * per
    with pytest.raises(ValueError, match="basis_device"):
        plan_basis(1, 10, dtype=torch.float32, device=CPU, basis_device="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="basis_device"):
        fl.HessianOptions(basis_device="host")  # type: ignore[arg-type]


def _objective() -> fl.Objective:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    X, y = torch.randn(64, 6, dtype=F64), torch.randint(0, 3, (64,))
    return fl.Objective(net, (X, y), batch_size=32)


def test_basis_options_reach_the_solver_and_change_no_result() -> None:
    obj = _objective()
    base = fl.hessian_eigenvalues(obj, k=2, tol=1e-8)
    host = fl.hessian_eigenvalues(obj, k=2, tol=1e-8, hessian=fl.HessianOptions(basis_device="cpu"))
    small = fl.hessian_eigenvalues(
        obj, k=2, tol=1e-8, hessian=fl.HessianOptions(memory_budget=8 * obj.dim * 8)
    )
    assert base.choices["basis"] == {
        "size": 14, "device": "cpu", "bytes": 30 * obj.dim * 8, "capped": False,
        "products": True,
    }  # fmt: skip
    assert host.choices["basis"]["device"] == "cpu"
    assert small.choices["basis"]["size"] == 4 and small.choices["basis"]["capped"]  # k + 2
    assert not small.choices["basis"]["products"]  # no room: verified by a block product
    assert small.iterations == small.matvecs - 2 and base.iterations == base.matvecs
    assert small.choices["retained_batches"] == 0  # the basis took the budget's half
    for res in (host, small):
        assert res.all_converged
        np.testing.assert_allclose(res.eigenvalues, base.eigenvalues, rtol=1e-8)


def test_restart_in_place_equals_the_whole_product() -> None:
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(50, 8, generator=gen, dtype=F64)
    C = torch.randn(6, 3, generator=gen, dtype=F64)
    want = V[:, :6] @ C
    restart_in_place(V, 6, C, chunk_bytes=7 * 6 * 8)  # slabs of 7 rows
    torch.testing.assert_close(V[:, :3], want, rtol=1e-14, atol=1e-14)


def test_one_sweep_orthogonalizes_a_lanczos_product() -> None:
    A = DenseOperator.from_spectrum(_spectrum(4.0, bulk=40))
    start = torch.randn(A.dim, generator=torch.Generator().manual_seed(3), dtype=F64)
    V = torch.zeros(A.dim, 12, dtype=F64)
    V[:, 0] = start / start.norm()
    known = V.new_zeros(0)
    for s in range(11):
        w, coef = reorthogonalize(A.matrix @ V[:, s], V[:, : s + 1], known)
        np.testing.assert_allclose((V[:, : s + 1].T @ (A.matrix @ V[:, s])).numpy(),
                                   coef.numpy(), atol=1e-12)  # fmt: skip
        V[:, s + 1] = w / w.norm()
        known = w.norm().reshape(1)
    torch.testing.assert_close(V.T @ V, torch.eye(12, dtype=F64), atol=1e-13, rtol=0)


def test_the_benchmarks_floor_agrees_with_an_unrestarted_run() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analyses"))
    from lanczos_floor import plain_lanczos_products

    A = DenseOperator.from_spectrum(_spectrum(10.0, 8.0, 6.0, 5.0, 4.5), seed=1)
    start = torch.randn(A.dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    floor = plain_lanczos_products(A, 5, v0=start, tol=1e-8)
    assert floor.converged and floor.products == _floor(A, 5, 1e-8)
    np.testing.assert_allclose(floor.values, [10.0, 8.0, 6.0, 5.0, 4.5], rtol=1e-8)
