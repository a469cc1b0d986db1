"""Tests of Keskar et al.'s ε-sharpness against closed forms on quadratics and on tiny nets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatness.curvature.objective import Objective
from flatness.sharpness.keskar import (
    KESKAR_EPS,
    KeskarResult,
    keskar_sharpness,
    random_subspace,
)
from tests.conftest import make_data, make_net

F64 = torch.float64
SOLVERS = ("projected-lbfgs", "lbfgsb", "pga")


class Quadratic(nn.Module):
    """``f(w) = 0.5 * sum_i d_i (w_i - c_i)^2`` with ``w`` the only parameter."""

    def __init__(self, w: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.register_buffer("c", c.clone())
        self.register_buffer("d", d.clone())

    def forward(self) -> torch.Tensor:
        return 0.5 * (self.d * (self.w - self.c) ** 2).sum()


def quadratic_objective(w: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> Objective:
    data = (torch.zeros(3, 1, dtype=F64), torch.zeros(3, dtype=F64))
    return Objective(Quadratic(w, c, d), data, loss_fn=None, batch_loss=lambda fn, _: fn())


def phi(max_loss: float, loss: float) -> float:
    return (max_loss - loss) / (1 + loss) * 100


def separable_maximum(w: torch.Tensor, c: torch.Tensor, d: torch.Tensor, eps: float) -> float:
    """Box maximum of the separable quadratic, one coordinate at a time."""
    r, b = (w - c).abs(), eps * (w.abs() + 1)
    convex = 0.5 * d * (r + b) ** 2  # d > 0: the face farther from c
    concave = torch.where(r > b, 0.5 * d * (r - b) ** 2, torch.zeros_like(r))  # d < 0
    return float(torch.where(d > 0, convex, concave).sum())


def _vectors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=gen, dtype=F64)
    d = 1 + 4 * torch.rand(n, generator=gen, dtype=F64)
    return w, d


def _trained(kind: str) -> Objective:
    X, y = make_data()
    net = make_net(kind)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(X), y).backward()
        opt.step()
    return Objective(net, (X, y))


@pytest.mark.parametrize("solver", SOLVERS)
def test_exact_minimum_random_start_reaches_the_corner(solver: str) -> None:
    w, d = _vectors(30, seed=0)
    obj = quadratic_objective(w, w, d)  # w = c: an exact minimum, f(x) = 0
    res = keskar_sharpness(obj, solver=solver)
    best = separable_maximum(w, w, d, 1e-3)
    assert res.loss == 0.0
    assert res.max_loss == pytest.approx(best, rel=1e-6)
    assert res.value == pytest.approx(phi(best, 0.0), rel=1e-6)
    assert res.start == "random" and res.value > 0


@pytest.mark.parametrize("solver", SOLVERS)
def test_exact_minimum_zero_start_cannot_move(solver: str) -> None:
    w, d = _vectors(30, seed=0)
    res = keskar_sharpness(quadratic_objective(w, w, d), solver=solver, start="zero")
    assert res.value == 0.0 and res.max_loss == 0.0
    assert res.at_bound == 0.0 and res.projected_gradient == 0.0
    assert res.success  # a first-order maximum of the ascent: the gradient vanishes


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("start", ["random", "zero"])
def test_away_from_the_minimum_the_far_corner_is_found(solver: str, start: str) -> None:
    w, d = _vectors(30, seed=1)
    b = 1e-3 * (w.abs() + 1)
    c = w + 5 * b * torch.sign(torch.randn(30, generator=torch.Generator().manual_seed(2)))
    obj = quadratic_objective(w, c, d)
    res = keskar_sharpness(obj, solver=solver, start=start)
    loss = float(obj.value())
    assert res.loss == pytest.approx(loss, rel=1e-12)
    assert res.max_loss == pytest.approx(separable_maximum(w, c, d, 1e-3), rel=1e-9)
    assert res.at_bound == 1.0 and res.projected_gradient == 0.0 and res.success


def test_lbfgsb_finds_interior_maxima_of_concave_coordinates() -> None:
    n = 40
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(n, generator=gen, dtype=F64)
    b = 1e-3 * (w.abs() + 1)
    sign = torch.sign(torch.randn(n, generator=gen, dtype=F64))
    c = w - b * (0.5 + 3 * torch.rand(n, generator=gen, dtype=F64)) * sign
    d = torch.where(torch.arange(n) % 2 == 0, 10.0, -10.0).to(F64)  # half concave
    obj = quadratic_objective(w, c, d)
    best = separable_maximum(w, c, d, 1e-3)
    assert keskar_sharpness(obj).max_loss == pytest.approx(best, rel=1e-8)
    assert keskar_sharpness(obj, solver="pga").max_loss == pytest.approx(best, rel=1e-3)


@pytest.mark.parametrize("solver", SOLVERS)
def test_subspace_matches_the_best_vertex(solver: str) -> None:
    # convex in y, so the box maximum is at one of the 2^p vertices; with the minimum
    # far outside the box the gradient's sign is constant over it and that vertex is unique
    n, p, eps, seed = 25, 5, 1e-3, 4
    w, d = _vectors(n, seed=5)
    c = w + 0.5 * torch.sign(torch.randn(n, generator=torch.Generator().manual_seed(6)))
    obj = quadratic_objective(w, c, d)
    A = random_subspace(n, p, seed=seed)
    b = eps * ((torch.linalg.pinv(A) @ w).abs() + 1)
    vertices = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=p)), dtype=F64) * b
    z = w + vertices @ A.T - c
    best = float((0.5 * d * z**2).sum(dim=1).max())
    res = keskar_sharpness(obj, subspace_dim=p, solver=solver, seed=seed, eps=eps)
    assert res.max_loss == pytest.approx(best, rel=1e-9)
    assert res.subspace_dim == p and res.subspace is not None and res.at_bound == 1.0


def test_random_subspace_is_reproducible_with_standard_normal_entries() -> None:
    A = random_subspace(4000, 6, seed=7)
    assert torch.equal(A, random_subspace(4000, 6, seed=7))
    assert not torch.equal(A, random_subspace(4000, 6, seed=8))
    assert torch.allclose(A.T @ A / 4000, torch.eye(6, dtype=F64), atol=0.1)
    assert random_subspace(10, 2, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("subspace_dim", [None, 7])
@pytest.mark.parametrize("solver", SOLVERS)
def test_reproducible_by_seed(subspace_dim: int | None, solver: str) -> None:
    obj = _trained("mlp")
    a = keskar_sharpness(obj, subspace_dim=subspace_dim, solver=solver, seed=3)
    b = keskar_sharpness(obj, **a.settings)
    c = keskar_sharpness(obj, subspace_dim=subspace_dim, solver=solver, seed=4)
    assert a.value == b.value and a.evaluations == b.evaluations
    # another seed draws another subspace; in the full space another start may reach the same vertex
    if subspace_dim is not None:
        assert c.value != a.value


@pytest.mark.parametrize("kind", ["relu_mlp", "bn_mlp"])
@pytest.mark.parametrize("subspace_dim", [None, 10])
def test_solvers_agree_on_trained_nets(kind: str, subspace_dim: int | None) -> None:
    obj = _trained(kind)
    for eps in KESKAR_EPS:
        lb = keskar_sharpness(obj, eps=eps, subspace_dim=subspace_dim)
        pga = keskar_sharpness(obj, eps=eps, subspace_dim=subspace_dim, solver="pga")
        assert lb.value > 0 and pga.value > 0
        assert 0.5 * lb.value <= pga.value <= 2 * lb.value
        assert lb.iterations <= 10 and pga.evaluations == 11 and pga.gradients == 11


def test_untrained_net_any_start_and_solver_gives_nonnegative_phi() -> None:
    X, y = make_data()
    obj = Objective(make_net("bn_mlp"), (X, y))
    for solver, start in itertools.product(SOLVERS, ("random", "zero")):
        res = keskar_sharpness(obj, solver=solver, start=start, maxiter=3)
        assert res.value >= 0 and res.max_loss >= res.loss
        assert 0.0 <= res.at_bound <= 1.0


def test_model_is_not_mutated() -> None:
    X, y = make_data()
    net = make_net("bn_mlp")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    obj = Objective(net, (X, y))
    for solver in SOLVERS:
        keskar_sharpness(obj, solver=solver)
        keskar_sharpness(obj, solver=solver, subspace_dim=5)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not net.training
    assert torch.equal(obj.theta0, torch.cat([p.reshape(-1) for p in net.parameters()]))


def test_float32_objective_matches_float64() -> None:
    X, y = make_data()
    net = make_net("mlp")
    obj64 = Objective(net, (X, y))
    obj32 = Objective(net, (X, y), dtype=torch.float32)
    for solver in SOLVERS:
        r64 = keskar_sharpness(obj64, solver=solver, eps=1e-2)
        r32 = keskar_sharpness(obj32, solver=solver, eps=1e-2)
        assert r32.value == pytest.approx(r64.value, rel=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("solver", SOLVERS)
def test_cuda_matches_cpu(solver: str) -> None:
    X, y = make_data()
    net = make_net("bn_mlp")
    cpu = keskar_sharpness(Objective(net, (X, y)), solver=solver, subspace_dim=8)
    gpu = keskar_sharpness(Objective(net, (X, y), device="cuda"), solver=solver, subspace_dim=8)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-6)


def test_result_record() -> None:
    w, d = _vectors(10, seed=0)
    res = keskar_sharpness(quadratic_objective(w, w, d), eps=5e-4, maxiter=4, seed=2)
    assert isinstance(res, KeskarResult)
    assert res.settings == {
        "eps": 5e-4,
        "subspace_dim": None,
        "solver": "projected-lbfgs",
        "maxiter": 4,
        "start": "random",
        "seed": 2,
    }
    row = res.to_dict()
    assert row["value"] == res.value and row["message"] == res.message
    assert row["subspace"] is None and row["dim"] == 10
    assert isinstance(row["success"], bool) and isinstance(row["status"], int)
    assert math.isfinite(row["seconds"]) and row["evaluations"] >= 1
    text = repr(res)
    assert text.startswith("KeskarResult(value=") and "solver='projected-lbfgs'" in text
    assert KESKAR_EPS == (1e-3, 5e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-3}, "eps"),
        ({"eps": math.nan}, "eps"),
        ({"subspace_dim": 0}, "subspace_dim"),
        ({"subspace_dim": 11}, "subspace_dim"),
        ({"subspace_dim": 2.5}, "subspace_dim"),
        ({"solver": "adam"}, "solver"),
        ({"start": "center"}, "start"),
        ({"maxiter": 0}, "maxiter"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    w, d = _vectors(10, seed=0)
    with pytest.raises(ValueError, match=match):
        keskar_sharpness(quadratic_objective(w, w, d), **kwargs)  # type: ignore[arg-type]
