"""Tests of the projected L-BFGS box maximizer and of its use by Keskar's ε-sharpness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from flatness.curvature.objective import Objective
from flatness.sharpness.box_ascent import scipy_lbfgsb_ascent
from flatness.sharpness.keskar import keskar_sharpness
from flatness.sharpness.projected_lbfgs import evaluation_budget, projected_lbfgs_ascent
from tests.conftest import make_data, make_net

DTYPES = (torch.float32, torch.float64)


class Counted:
    """A separable quadratic ``f(y) = 0.5 * sum_i d_i (y_i - c_i)^2`` that counts its calls."""

    def __init__(self, c: Tensor, d: Tensor) -> None:
        self.c, self.d, self.calls = c, d, 0

    def __call__(self, y: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += 1
        r = y - self.c
        return 0.5 * (self.d * r * r).sum(), self.d * r

    def box_maximum(self, b: Tensor) -> Tensor:
        """The analytic maximizer over ``|y_i| <= b_i`` (unique for the problems below)."""
        convex = torch.where(self.c > 0, -b, b)  # the face farther from c
        concave = self.c.clamp(-b, b)  # c itself, or the face nearest to it
        return torch.where(self.d > 0, convex, concave)


def _problem(n: int, dtype: torch.dtype, seed: int) -> tuple[Counted, Tensor]:
    """Half the coordinates concave (maximum inside the box or on the nearer face), half
    convex with the minimum outside the box (one far face): a unique box maximum."""
    gen = torch.Generator().manual_seed(seed)
    b = 0.5 + torch.rand(n, generator=gen, dtype=torch.float64)
    sign = torch.sign(torch.randn(n, generator=gen, dtype=torch.float64))
    concave = torch.arange(n) % 2 == 0
    offset = torch.where(concave, 1.6 * torch.rand(n, generator=gen, dtype=torch.float64), 1.5)
    c = sign * offset * b
    d = torch.where(concave, -(1 + 9 * torch.rand(n, generator=gen, dtype=torch.float64)), 3.0)
    return Counted(c.to(dtype), d.to(dtype)), b.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_analytic_box_maximum(dtype: torch.dtype, seed: int) -> None:
    f, b = _problem(40, dtype, seed)
    y0 = (2 * torch.rand(40, generator=torch.Generator().manual_seed(9), dtype=dtype) - 1) * b
    res = projected_lbfgs_ascent(f, y0, b, maxiter=30)
    best = f.box_maximum(b)
    # at an interior maximum f is flat to second order: the point is found to about
    # the square root of the dtype's epsilon, the value to about the epsilon
    eps = torch.finfo(dtype).eps
    assert res.point.dtype == dtype
    assert float((res.point - best).abs().max()) <= 30 * eps**0.5
    assert res.value == pytest.approx(float(f(best)[0]), rel=30 * eps)
    assert res.success and res.status == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_counts_are_the_calls_and_stay_in_the_budget(dtype: torch.dtype) -> None:
    for seed in range(4):
        f, b = _problem(30, dtype, seed)
        for maxiter in (1, 3, 10):
            res = projected_lbfgs_ascent(f, torch.zeros(30, dtype=dtype), b, maxiter=maxiter)
            assert res.evaluations == res.gradients == f.calls
            assert res.evaluations <= evaluation_budget(maxiter)
            assert res.iterations <= maxiter
            assert bool((res.point.abs() <= b).all())
            f.calls = 0


def test_an_overshooting_vertex_step_backtracks_to_an_increase() -> None:
    # concave everywhere with the maximum inside: the first (vertex) step goes too far,
    # the search backtracks along the segment and the quasi-Newton steps finish the job
    c = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    f = Counted(c, torch.tensor([-1.0, -2.0, -4.0], dtype=torch.float64))
    b = torch.ones(3, dtype=torch.float64)
    res = projected_lbfgs_ascent(f, torch.full((3,), 0.3, dtype=torch.float64), b, maxiter=30)
    assert torch.allclose(res.point, c, atol=1e-8)
    assert res.evaluations > res.iterations + 1  # some trials were rejected
    assert res.evaluations == f.calls


def test_the_evaluation_budget_stops_the_search() -> None:
    c = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    f = Counted(c, torch.tensor([-1.0, -2.0, -4.0], dtype=torch.float64))
    b = torch.ones(3, dtype=torch.float64)
    res = projected_lbfgs_ascent(f, torch.zeros(3, dtype=torch.float64), b, 30, max_evaluations=3)
    assert res.evaluations == f.calls == 3 and res.status == 1
    assert "evaluation limit" in res.message


def test_starts_outside_the_box_are_clamped_and_bad_settings_refused() -> None:
    f, b = _problem(6, torch.float64, 0)
    res = projected_lbfgs_ascent(f, 10 * b, b, maxiter=20)
    assert torch.allclose(res.point, f.box_maximum(b))
    with pytest.raises(ValueError, match="maxiter"):
        projected_lbfgs_ascent(f, b, b, maxiter=0)
    with pytest.raises(ValueError, match="max_evaluations"):
        projected_lbfgs_ascent(f, b, b, maxiter=3, max_evaluations=0)


def test_solves_a_coupled_concave_quadratic_at_least_as_well_as_scipy() -> None:
    # f = -0.5 (y - c)' Q (y - c) with Q positive definite and c outside the box:
    # a unique box maximum, on some faces, not separable; checked by its KKT conditions
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    Q = M @ M.T / 12 + torch.eye(12, dtype=torch.float64)
    c = 2 * torch.randn(12, generator=gen, dtype=torch.float64)

    def f(y: Tensor) -> tuple[Tensor, Tensor]:
        r = y - c
        return -0.5 * r @ Q @ r, -(Q @ r)

    b = torch.ones(12, dtype=torch.float64)
    ours = projected_lbfgs_ascent(f, torch.zeros(12, dtype=torch.float64), b, maxiter=200)
    ref = scipy_lbfgsb_ascent(f, torch.zeros(12, dtype=torch.float64), b, maxiter=200)
    assert ours.value >= ref.value - 1e-12 and ours.success
    y = ours.point
    free = y.abs() < 1 - 1e-9
    exact = y.clone()  # the free coordinates solve Q_FF (y_F - c_F) = -Q_FB (y_B - c_B)
    rhs = -(Q[free][:, ~free] @ (y[~free] - c[~free]))
    exact[free] = c[free] + torch.linalg.solve(Q[free][:, free], rhs)
    grad = -(Q @ (exact - c))
    assert torch.allclose(y, exact, atol=1e-6)
    assert bool((exact[free].abs() < 1).all())
    assert bool((grad[~free] * torch.sign(y[~free]) >= 0).all())  # pushing out: a maximum


def _trained(kind: str) -> Objective:
    X, y = make_data()
    net = make_net(kind)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(X), y).backward()
        opt.step()
    return Objective(net, (X, y))


@pytest.mark.parametrize("kind", ["mlp", "relu_mlp", "bn_mlp"])
def test_keskar_default_is_at_least_scipy_in_the_full_space(kind: str) -> None:
    obj = _trained(kind)
    for eps in (1e-3, 5e-4):
        ours = keskar_sharpness(obj, eps=eps)
        scipy = keskar_sharpness(obj, eps=eps, solver="lbfgsb")
        assert ours.solver == "projected-lbfgs" and scipy.solver == "lbfgsb"
        assert ours.value >= scipy.value * (1 - 1e-3)
        assert ours.gradient_equivalents <= 15 and ours.iterations <= 10
        assert ours.evaluations == ours.gradients <= evaluation_budget(10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keskar_default_runs_in_the_objective_dtype(dtype: torch.dtype) -> None:
    X, y = make_data()
    obj = Objective(make_net("mlp"), (X, y), dtype=dtype)
    res = keskar_sharpness(obj, eps=1e-2, subspace_dim=5)
    ref = keskar_sharpness(Objective(make_net("mlp"), (X, y)), eps=1e-2, subspace_dim=5)
    assert res.value == pytest.approx(ref.value, rel=1e-2 if dtype == torch.float32 else 1e-12)


def test_the_new_default_is_a_new_task_key_and_lbfgsb_keeps_the_old_one() -> None:
    from flatness.pipeline.measures import get_measure, settings_key

    keskar = get_measure("keskar")
    (default,) = keskar.tasks({"eps": 1e-3, "subspace": 0, "maxiter": 3})
    assert default["solver"] == "projected-lbfgs"
    (old,) = keskar.tasks({"eps": 1e-3, "subspace": 0, "maxiter": 3, "solver": "lbfgsb"})
    # the key stores scored with version 0.1's default kept (tests/pipeline/test_measure_rows)
    assert settings_key(old) == (
        '{"eps": 0.001, "maxiter": 3, "seed": 0, "solver": "lbfgsb", "start": "random", '
        '"subspace": 0}'
    )
