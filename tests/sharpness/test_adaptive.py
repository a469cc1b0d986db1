"""Worst-case sharpness (plain and adaptive, l2 and l-inf, m-sharpness) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from flatness.curvature.objective import Objective
from flatness.sharpness.adaptive import AdaptiveSharpnessResult, adaptive_sharpness
from tests.conftest import make_data, make_net


class Quadratic(nn.Module):
    """Per-example loss ``0.5 * sum_i x_i * (Q (w - c))_i**2``: each input row holds curvatures.

    The mean loss over examples has its minimum at ``c`` and the Hessian
    ``Q^T diag(mean_x) Q``, whose eigenvalues are the mean curvatures.
    """

    def __init__(self, center: Tensor, rotation: Tensor | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(center.clone())
        self.register_buffer("c", center.clone())
        q = torch.eye(len(center), dtype=center.dtype) if rotation is None else rotation
        self.register_buffer("q", q)

    def forward(self, x: Tensor) -> Tensor:
        r = self.q @ (self.w - self.c)
        return 0.5 * (x * r**2).sum(-1)


def mean_of(out: Tensor, target: Tensor) -> Tensor:
    return out.mean()


def quadratic_objective(
    curvatures: Tensor,
    center: Tensor | None = None,
    rotation: Tensor | None = None,
    batch_size: int = 1024,
) -> Objective:
    """An Objective whose example ``k`` has the curvatures ``curvatures[k]``."""
    n, dim = curvatures.shape
    center = torch.zeros(dim, dtype=torch.float64) if center is None else center
    net = Quadratic(center, rotation)
    return Objective(net, (curvatures, torch.zeros(n)), loss_fn=mean_of, batch_size=batch_size)


def random_rotation(dim: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return q


D = torch.tensor([4.0, 1.5, 1.0, 0.5, 0.25], dtype=torch.float64)
CENTER = torch.tensor([0.5, -2.0, 1.0, 0.1, -0.3], dtype=torch.float64)


def test_plain_l2_is_half_rho_squared_lambda_max() -> None:
    obj = quadratic_objective(D.expand(6, -1), rotation=random_rotation(5, 0))
    res = adaptive_sharpness(obj, rho=0.1, p=2, adaptive=False, steps=50)
    assert res.value == pytest.approx(0.5 * 0.1**2 * float(D.max()), rel=1e-6)
    assert res.perturbation is not None
    assert float(res.perturbation.norm()) == pytest.approx(0.1, rel=1e-9)


def test_plain_linf_is_half_rho_squared_sum_of_curvatures() -> None:
    obj = quadratic_objective(D.expand(6, -1))
    res = adaptive_sharpness(obj, rho=0.2, p="inf", adaptive=False, steps=20)
    assert res.value == pytest.approx(0.5 * 0.2**2 * float(D.sum()), rel=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.1])
def test_adaptive_closed_forms_scale_by_weight_magnitudes(eta: float) -> None:
    obj = quadratic_objective(D.expand(6, -1), center=CENTER)
    scaled = D * (CENTER.abs() + eta) ** 2  # curvature in the scaled coordinates
    l2 = adaptive_sharpness(obj, rho=0.05, p=2, eta=eta, steps=60)
    linf = adaptive_sharpness(obj, rho=0.05, p="inf", eta=eta, steps=20)
    assert l2.value == pytest.approx(0.5 * 0.05**2 * float(scaled.max()), rel=1e-6)
    assert linf.value == pytest.approx(0.5 * 0.05**2 * float(scaled.sum()), rel=1e-12)
    assert l2.adaptive and l2.eta == eta and l2.p == "2" and linf.p == "inf"


def test_m_sharpness_averages_per_chunk_maxima() -> None:
    gen = torch.Generator().manual_seed(3)
    curv = torch.rand(10, 4, generator=gen, dtype=torch.float64) * 3 + 0.1
    obj = quadratic_objective(curv, batch_size=4)  # chunks of 3 cross batch boundaries
    res = adaptive_sharpness(obj, rho=0.1, p="inf", adaptive=False, steps=10, m=3)
    groups = [curv[0:3], curv[3:6], curv[6:9], curv[9:10]]  # the last chunk holds the rest
    expected = [0.5 * 0.1**2 * float(g.mean(0).sum()) for g in groups]
    assert res.chunks == 4 and res.m == 3
    assert res.chunk_values == pytest.approx(expected, rel=1e-12)
    assert res.value == pytest.approx(sum(expected) / 4, rel=1e-12)
    sd = torch.tensor(expected, dtype=torch.float64).std(unbiased=True).item()
    assert res.stderr == pytest.approx(sd / 2, rel=1e-9)
    assert res.gradients == 40 and res.evaluations == 4 * 12


def test_m_sharpness_is_at_least_full_data_sharpness() -> None:
    gen = torch.Generator().manual_seed(4)
    curv = torch.rand(8, 4, generator=gen, dtype=torch.float64) * 3 + 0.1
    obj = quadratic_objective(curv, batch_size=3)
    # close top curvatures slow the l2 direction's convergence: take steps as long as rho
    settings = {"rho": 0.1, "adaptive": False, "steps": 60, "step_size": 0.1}
    full = adaptive_sharpness(obj, **settings)
    per_example = adaptive_sharpness(obj, **settings, m=1)
    assert full.value == pytest.approx(0.5 * 0.01 * float(curv.mean(0).max()), rel=1e-4)
    expected = [0.5 * 0.01 * float(c.max()) for c in curv]
    assert per_example.chunk_values == pytest.approx(expected, rel=1e-4)
    assert per_example.value > full.value
    assert math.isnan(full.stderr) and per_example.stderr > 0


def test_m_equal_to_the_data_set_is_the_full_maximization() -> None:
    obj = Objective(make_net("relu_mlp"), make_data(12), batch_size=5)
    full = adaptive_sharpness(obj, rho=0.05, steps=4)
    one_chunk = adaptive_sharpness(obj, rho=0.05, steps=4, m=12)
    assert one_chunk.chunks == 1
    assert one_chunk.value == pytest.approx(full.value, rel=1e-12)


def test_network_result_is_reproducible_and_records_its_evidence() -> None:
    obj = Objective(make_net("relu_mlp"), make_data(20))
    a = adaptive_sharpness(obj, rho=0.05, steps=6, seed=7)
    b = adaptive_sharpness(obj, rho=0.05, steps=6, seed=7)
    c = adaptive_sharpness(obj, rho=0.05, steps=6, seed=8)
    assert isinstance(a, AdaptiveSharpnessResult)
    assert a.value == b.value and a.max_loss == b.max_loss
    assert a.value != c.value
    assert a.value > 0 and a.max_loss == pytest.approx(a.loss + a.value)
    assert a.loss == pytest.approx(float(obj.value()), rel=1e-12)
    assert (a.evaluations, a.gradients, a.chunks, a.seed) == (8, 6, 1, 7)
    assert a.step_size == pytest.approx(2 * 0.05 / math.sqrt(6))
    d = a.to_dict(include_arrays=False)
    assert d["p"] == "2" and "perturbation" not in d and d["stderr"] != d["stderr"]
    assert "AdaptiveSharpnessResult(adaptive" in repr(a)


def test_the_perturbation_stays_in_the_scaled_ball() -> None:
    obj = Objective(make_net("mlp"), make_data(16))
    for p in (2, "inf"):
        res = adaptive_sharpness(obj, rho=0.03, p=p, steps=5, eta=0.01)
        assert res.perturbation is not None
        gamma = res.perturbation / (obj.theta0.abs() + 0.01)
        size = gamma.norm() if p == 2 else gamma.abs().max()
        assert float(size) <= 0.03 * (1 + 1e-12)


def test_zero_steps_keeps_the_better_of_start_and_centre() -> None:
    obj = quadratic_objective(D.expand(3, -1))
    res = adaptive_sharpness(obj, rho=0.1, adaptive=False, steps=0)
    assert res.evaluations == 2 and res.gradients == 0
    assert 0 < res.value <= 0.5 * 0.01 * float(D.max())


def test_model_is_not_mutated() -> None:
    net = make_net("bn_mlp")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adaptive_sharpness(Objective(net, make_data(10)), rho=0.05, steps=3, m=5)
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho": 0.0}, "rho"),
        ({"rho": -1.0}, "rho"),
        ({"rho": float("nan")}, "rho"),
        ({"rho": 0.1, "p": 1}, "p must be"),
        ({"rho": 0.1, "p": "fro"}, "p must be"),
        ({"rho": 0.1, "eta": -0.1}, "eta"),
        ({"rho": 0.1, "steps": -1}, "steps"),
        ({"rho": 0.1, "steps": 2.5}, "steps"),
        ({"rho": 0.1, "step_size": 0.0}, "step_size"),
        ({"rho": 0.1, "m": 0}, "m must be"),
        ({"rho": 0.1, "m": 11}, "m must be"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict, match: str) -> None:
    obj = quadratic_objective(D.expand(10, -1))
    with pytest.raises(ValueError, match=match):
        adaptive_sharpness(obj, **kwargs)
