"""Cheap by design: warm-started eigenvalues are certified like cold ones; common probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flatness as fl
from flatness.tracking import Tracker
from tests.tracking.conftest import tiny_data, tiny_net


@pytest.mark.parametrize("tol", [1e-3, 1e-10])
def test_warm_lambda_max_equals_a_cold_certified_call_at_every_tracked_step(tol: float) -> None:
    net = tiny_net()
    X, y = data = tiny_data(96)
    tracker = Tracker(data, measures={"lambda_max": {"k": 2, "tol": tol}}, every=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    cold_matvecs = []
    for step in range(16):
        rec = tracker.update(net, step=step, lr=0.5, batch_size=16)
        if rec is not None:
            cold = fl.hessian_eigenvalues(fl.Objective(net, data), k=2, tol=tol)
            assert cold.all_converged
            assert rec["lambda_max_converged"] == rec["lambda_2_converged"] == 1
            for i, name in enumerate(("lambda_max", "lambda_2")):
                # both are within their certified residuals of one eigenvalue: the same one
                bound = rec[f"{name}_stderr"] + cold.residuals[i]
                assert abs(rec[name] - cold.eigenvalues[i]) <= max(bound, 1e-12), (step, name)
                assert rec[f"{name}_stderr"] <= tol * abs(rec[name]) * 1.0001
            cold_matvecs.append(cold.matvecs)
        batch = slice(16 * (step % 6), 16 * (step % 6) + 16)
        opt.zero_grad()
        F.cross_entropy(net(X[batch]), y[batch]).backward()
        opt.step()
    df = tracker.frame()
    assert df["lambda_max_warm"].tolist() == [0, 1, 1, 1, 1, 1]
    if tol == 1e-3:  # warm calls are cheaper than cold ones
        assert df["lambda_max_matvecs"][1:].mean() < np.mean(cold_matvecs[1:])


def _linear_regression(dim: int = 30, n: int = 200) -> tuple[nn.Module, torch.Tensor, tuple]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, dim, generator=gen, dtype=torch.float64) * torch.linspace(0.2, 2.0, dim)
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    model = nn.Linear(dim, 1).double()
    Xb = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    hessian = Xb.T @ Xb / n  # of the loss ½·mean((Xw + b − y)²)
    return model, hessian, (X, y)


def _half_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * F.mse_loss(out, target)


def test_gradient_descent_on_a_quadratic_tracks_the_exact_lambda_max_and_a_flat_trace() -> None:
    model, hessian, (X, y) = _linear_regression()
    exact = torch.linalg.eigvalsh(hessian)
    lr = 1.0 / float(exact[-1])
    measures = {"lambda_max": {"tol": 1e-10}, "trace": {"budget": 12}}
    tracker = Tracker((X, y), measures=measures, loss_fn=_half_mse, every=2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(11):
        tracker.update(model, step=step, lr=lr, batch_size=len(X))
        opt.zero_grad()
        _half_mse(model(X), y).backward()
        opt.step()
    df = tracker.frame()
    assert len(df) == 6 and df["train_loss"].is_monotonic_decreasing
    np.testing.assert_allclose(df["lambda_max"], float(exact[-1]), rtol=1e-9)
    assert (df["lambda_max_converged"] == 1).all()
    # The Hessian does not move, and neither do the common random probes: one value (up to
    # the last bits of the products), where other probes would differ by about the stderr.
    assert np.ptp(df["trace"]) < 1e-9 * df["trace"][0] and df["trace_stderr"][0] > 1e-3
    assert abs(df["trace"][0] - float(exact.sum())) < 5 * df["trace_stderr"][0]
    assert df["stability_threshold"][0] == pytest.approx(2 * float(exact[-1]))
