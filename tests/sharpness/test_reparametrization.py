"""Dinh et al. (2017): a function-preserving rescaling of a ReLU network.

Multiplying layer l's weight and bias by α > 0 and layer l+1's weight by 1/α leaves the
function unchanged (ReLU is positively homogeneous), yet it changes the plain
worst-case sharpness of Keskar et al. and the Hessian's top eigenvalue as much as one
likes. The adaptive measures scale the perturbation by |w| (with η = 0, ε = 0), so under
the rescaling the optimization path in the scaled coordinates, and the same seeded
noise, are identical: their values agree to rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from flatness.curvature.eigenvalues import hessian_eigenvalues
from flatness.curvature.objective import Objective
from flatness.sharpness.adaptive import adaptive_sharpness
from flatness.sharpness.average import average_sharpness
from flatness.sharpness.jiang2019pacbayes import pacbayes_flatness, pacbayes_mag_flatness
from tests.conftest import make_data

ALPHAS = [0.1, 10.0]


def relu_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)
    ).double()


def rescaled(net: nn.Sequential, alpha: float, layer: int = 2) -> nn.Sequential:
    """Layer ``layer``'s weight and bias times alpha, the next Linear's weight over alpha."""
    out = copy.deepcopy(net)
    with torch.no_grad():
        out[layer].weight.mul_(alpha)
        out[layer].bias.mul_(alpha)
        out[layer + 2].weight.div_(alpha)
    return out


@pytest.fixture(scope="module")
def pair() -> dict[float, tuple[Objective, Objective]]:
    X, y = make_data(24)
    net = relu_net()
    return {a: (Objective(net, (X, y)), Objective(rescaled(net, a), (X, y))) for a in ALPHAS}


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_rescaled_network_computes_the_same_function(alpha: float) -> None:
    X, _ = make_data(24)
    net = relu_net()
    torch.testing.assert_close(rescaled(net, alpha)(X), net(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_plain_sharpness_and_lambda_max_change(pair: dict, alpha: float) -> None:
    obj, obj2 = pair[alpha]
    assert float(obj2.value()) == pytest.approx(float(obj.value()), rel=1e-12)
    plain = adaptive_sharpness(obj, rho=0.05, adaptive=False, steps=10)
    plain2 = adaptive_sharpness(obj2, rho=0.05, adaptive=False, steps=10)
    lam = hessian_eigenvalues(obj, k=1, tol=1e-6).eigenvalues[0]
    lam2 = hessian_eigenvalues(obj2, k=1, tol=1e-6).eigenvalues[0]
    for a, b in ((plain.value, plain2.value), (lam, lam2)):
        ratio = b / a
        assert ratio > 2 or ratio < 0.5, (a, b)


@pytest.mark.parametrize("p", [2, "inf"])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_adaptive_worst_case_sharpness_is_invariant(pair: dict, alpha: float, p: object) -> None:
    obj, obj2 = pair[alpha]
    a = adaptive_sharpness(obj, rho=0.05, p=p, eta=0.0, steps=10, seed=3)
    b = adaptive_sharpness(obj2, rho=0.05, p=p, eta=0.0, steps=10, seed=3)
    assert a.value > 0
    assert b.value == pytest.approx(a.value, rel=1e-6)
    m_a = adaptive_sharpness(obj, rho=0.05, p=p, steps=4, m=8, seed=3)
    m_b = adaptive_sharpness(obj2, rho=0.05, p=p, steps=4, m=8, seed=3)
    assert m_b.chunk_values == pytest.approx(m_a.chunk_values, rel=1e-6)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_adaptive_average_sharpness_is_invariant(pair: dict, alpha: float) -> None:
    obj, obj2 = pair[alpha]
    a = average_sharpness(obj, sigma=0.1, samples=16, eta=0.0, seed=4)
    b = average_sharpness(obj2, sigma=0.1, samples=16, eta=0.0, seed=4)
    assert b.value == pytest.approx(a.value, rel=1e-6)
    assert b.sample_values == pytest.approx(a.sample_values, rel=1e-6, abs=1e-12)
    plain = average_sharpness(obj, sigma=0.1, samples=16, adaptive=False, seed=4)
    plain2 = average_sharpness(obj2, sigma=0.1, samples=16, adaptive=False, seed=4)
    assert abs(plain2.value - plain.value) > 0.1 * abs(plain.value)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_magnitude_aware_pacbayes_is_invariant_without_epsilon(pair: dict, alpha: float) -> None:
    obj, obj2 = pair[alpha]
    a = pacbayes_mag_flatness(obj, epsilon=0.0, samples=4, rtol=1e-3, seed=5)
    b = pacbayes_mag_flatness(obj2, epsilon=0.0, samples=4, rtol=1e-3, seed=5)
    assert a.converged and b.converged
    assert b.sigma == pytest.approx(a.sigma, rel=1e-6)
    plain = pacbayes_flatness(obj, samples=4, rtol=1e-3, seed=5)
    plain2 = pacbayes_flatness(obj2, samples=4, rtol=1e-3, seed=5)
    assert abs(plain2.sigma / plain.sigma - 1) > 0.1
