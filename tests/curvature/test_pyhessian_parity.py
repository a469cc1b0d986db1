"""Parity with PyHessian 0.1 on the same model, data and evaluation mode.

PyHessian is the most used peer; these tests show where we agree with it, where its
stopping rule leaves an error larger than its own tolerance, and where it no longer
runs on current PyTorch.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import flatness as fl
from tests.conftest import dense_hessian

pyhessian = pytest.importorskip("pyhessian")


def _case(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 4)).eval()
    X, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    H = dense_hessian(copy.deepcopy(net).double(), X.double(), y)
    return net, X, y, H


def _pyhessian(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> object:
    torch.manual_seed(100)  # PyHessian draws its vectors from the global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyhessian.hessian(copy.deepcopy(net), nn.CrossEntropyLoss(), data=(X, y), cuda=False)


def test_top_eigenvalue_agrees_where_power_iteration_converges() -> None:
    net, X, y, H = _case(seed=7)  # top two eigenvalues well apart (ratio 0.66)
    exact = torch.linalg.eigvalsh(H)[-1].item()
    ph_top = _pyhessian(net, X, y).eigenvalues(top_n=1)[0][0]  # type: ignore[attr-defined]
    ours = fl.hessian_eigenvalues(fl.Objective(net, (X, y)), k=1, tol=1e-4, seed=0)
    power = fl.power_iteration(fl.Objective(net, (X, y)), k=1, tol=1e-3, seed=0)
    assert ph_top == pytest.approx(exact, rel=1e-3)
    assert power.eigenvalues[0] == pytest.approx(ph_top, rel=2e-3)
    assert ours.eigenvalues[0] == pytest.approx(exact, rel=1e-6)
    assert ours.all_converged


def test_pyhessian_early_stop_misses_its_tolerance_where_ours_is_certified() -> None:
    net, X, y, H = _case(seed=5)  # top two eigenvalues 2.7% apart
    exact = torch.linalg.eigvalsh(H)[-1].item()
    ph_top = _pyhessian(net, X, y).eigenvalues(top_n=1, tol=1e-3)[0][0]  # type: ignore[attr-defined]
    ph_error = abs(ph_top - exact) / exact
    assert ph_error > 5e-3  # five times its own tolerance: the relative-change rule stopped early
    ours = fl.hessian_eigenvalues(fl.Objective(net, (X, y)), k=1, tol=1e-4, seed=0)
    assert ours.all_converged
    assert abs(ours.eigenvalues[0] - exact) / exact < 1e-6
    assert ours.residuals[0] <= 1e-4 * abs(ours.eigenvalues[0])
    # our power iteration uses PyHessian's stopping rule but reports the residual honestly
    power = fl.power_iteration(fl.Objective(net, (X, y)), k=1, tol=1e-3, seed=0)
    assert not power.converged[0]
    assert power.residuals[0] > 1e-3 * abs(power.eigenvalues[0])


def test_trace_agrees_within_pyhessian_sampling_error() -> None:
    net, X, y, H = _case(seed=7)
    exact = torch.trace(H).item()
    samples = np.asarray(_pyhessian(net, X, y).trace())  # type: ignore[attr-defined]
    stderr = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - exact) < 4 * stderr
    ours = fl.hessian_trace(fl.Objective(net, (X, y)), method="exact")
    assert ours.estimate == pytest.approx(exact, rel=1e-5)


def test_pyhessian_density_fails_on_current_torch() -> None:
    net, X, y, _ = _case(seed=7)
    with pytest.raises(RuntimeError, match="removed"):
        _pyhessian(net, X, y).density(iter=5, n_v=1)  # type: ignore[attr-defined]
    ours = fl.spectral_density(fl.Objective(net, (X, y)), steps=5, runs=1, seed=0)
    assert ours.matvecs == 5
