"""Every estimator, run through an Objective, against the dense float64 Hessian.

Tiny networks (a tanh MLP, a ReLU MLP, a BatchNorm MLP in eval mode and a small conv
net) are small enough for ``torch.func.hessian``; the estimators must agree with
its eigenvalues, trace and quadrature to <= 1e-6 relative in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flatness as fl
from tests.conftest import dense_hessian, make_data, make_net


@pytest.fixture
def case(net_kind: str) -> tuple[fl.Objective, torch.Tensor]:
    net = make_net(net_kind)
    X, y = make_data(n=30)
    return fl.Objective(net, (X, y), batch_size=11), dense_hessian(net, X, y)


def test_top_and_bottom_eigenvalues(case: tuple[fl.Objective, torch.Tensor]) -> None:
    obj, H = case
    exact = torch.linalg.eigvalsh(H)
    top = fl.hessian_eigenvalues(obj, k=3, which="LA", tol=1e-9, seed=0)
    assert top.all_converged
    np.testing.assert_allclose(top.eigenvalues, exact.flip(0)[:3].numpy(), rtol=1e-6)
    bottom = fl.hessian_eigenvalues(obj, k=1, which="SA", tol=1e-9, seed=0)
    assert bottom.all_converged
    assert bottom.eigenvalues[0] == pytest.approx(exact[0].item(), rel=1e-6)
    largest = fl.hessian_eigenvalues(obj, k=1, which="LM", tol=1e-9, seed=0)
    assert abs(largest.eigenvalues[0]) == pytest.approx(exact.abs().max().item(), rel=1e-6)


def test_trace_estimators(case: tuple[fl.Objective, torch.Tensor], net_kind: str) -> None:
    obj, H = case
    exact = torch.trace(H).item()
    # Hutch++ with a budget of 3 x dim takes the whole range exactly
    full = fl.hessian_trace(obj, method="hutchpp", budget=3 * obj.dim, seed=0)
    assert full.estimate == pytest.approx(exact, rel=1e-6)
    sampled = fl.hessian_trace(obj, method="hutchinson", budget=200, seed=0)
    assert abs(sampled.estimate - exact) < 5 * sampled.stderr
    if net_kind == "mlp":  # tanh: not piecewise linear, the exact trace refuses
        with pytest.raises(ValueError, match="piecewise-linear"):
            fl.hessian_trace(obj, method="exact")
    else:
        assert fl.hessian_trace(obj, method="exact").estimate == pytest.approx(exact, rel=1e-6)


def test_density_quadrature(case: tuple[fl.Objective, torch.Tensor]) -> None:
    obj, H = case
    exact = torch.linalg.eigvalsh(H)
    ours = fl.spectral_density(obj, steps=obj.dim, runs=2, seed=3)
    ref = fl.spectral_density(fl.DenseOperator(H), steps=obj.dim, runs=2, seed=3)
    # same probes, same quadrature: the Objective path reproduces the dense matrix's
    np.testing.assert_allclose(ours.run_moments(1), ref.run_moments(1), rtol=1e-6)
    np.testing.assert_allclose(ours.run_moments(2), ref.run_moments(2), rtol=1e-6)
    low, high = ours.support
    assert high == pytest.approx(exact[-1].item(), rel=1e-6)
    assert low == pytest.approx(exact[0].item(), rel=1e-6, abs=1e-9)
    many = fl.spectral_density(obj, steps=8, runs=40, seed=0)
    mean = torch.trace(H).item() / obj.dim
    assert abs(many.moments(1) - mean) < 5 * many.moments_stderr(1)
