"""Tests of the gradient noise scale B_simple (McCandlish et al. 2018)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flatness.curvature.objective import Objective
from flatness.sharpness.noise_scale import NoiseScaleResult, gradient_noise_scale
from tests.conftest import make_data, make_net


def signal_data(n: int) -> tuple[Tensor, Tensor]:
    """Inputs with learnable labels, so that the mean gradient stands above the noise."""
    X, _ = make_data(n=n)
    return X, (X[:, 0] > 0).long()


def per_example_gradients(net: nn.Module, X: Tensor, y: Tensor) -> Tensor:
    """Brute force: one backward pass per example, in float64, by a Python loop."""
    params = [p for p in net.parameters()]
    rows = []
    for i in range(X.shape[0]):
        loss = F.cross_entropy(net(X[i : i + 1]), y[i : i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def reference(g: Tensor) -> tuple[float, float, float]:
    """(tr Σ, unbiased |G|², B_simple) from a matrix of unit gradients (equal weights)."""
    n = g.shape[0]
    mean = g.mean(0)
    trace = ((g - mean) ** 2).sum().item() / (n - 1)
    g2 = (mean @ mean).item() - trace / n
    return trace, g2, trace / g2


class Shift(nn.Module):
    """out_i = θ - x_i, so with loss ½|out|² the per-example gradient is θ - x_i."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.theta - x


def half_sq(out: Tensor, target: Tensor) -> Tensor:
    return 0.5 * (out**2).sum(-1).mean()


def quadratic(n: int, seed: int, theta: Tensor, mu: Tensor, chol: Tensor) -> Objective:
    gen = torch.Generator().manual_seed(seed)
    X = mu + torch.randn(n, mu.shape[0], generator=gen, dtype=torch.float64) @ chol.T
    return Objective(Shift(theta), (X, torch.zeros(n)), loss_fn=half_sq, batch_size=64)


@pytest.mark.parametrize("kind", ["mlp", "bn_mlp", "conv"])
def test_examples_method_matches_brute_force(kind: str) -> None:
    net = make_net(kind)
    X, y = signal_data(30)
    obj = Objective(net, (X, y), batch_size=8)
    res = gradient_noise_scale(obj, chunk_size=7)
    trace, g2, b = reference(per_example_gradients(net, X, y))
    assert math.isclose(res.trace_cov, trace, rel_tol=1e-10)
    assert math.isclose(res.grad_norm_sq, g2, rel_tol=1e-10)
    assert math.isclose(res.b_simple, b, rel_tol=1e-10)
    full = obj.gradient()
    assert math.isclose(res.grad_norm_sq_biased, (full @ full).item(), rel_tol=1e-10)
    assert math.isclose(res.grad_norm_sq, res.grad_norm_sq_biased - res.trace_cov / 30)
    assert res.num_gradients == 30 and res.num_examples == 30 and res.mean_batch_size == 1.0


def test_delete_one_jackknife_matches_brute_force() -> None:
    net = make_net("mlp")
    X, y = signal_data(12)
    res = gradient_noise_scale(Objective(net, (X, y)), groups=12)
    assert res.groups == 12
    g = per_example_gradients(net, X, y)
    loo = np.array([reference(torch.cat([g[:i], g[i + 1 :]])) for i in range(12)])
    se = np.sqrt(11 / 12 * ((loo - loo.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(
        [res.trace_cov_stderr, res.grad_norm_sq_stderr, res.b_simple_stderr], se, rtol=1e-8
    )


def test_known_covariance_of_a_quadratic() -> None:
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    chol = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [-0.3, 0.2, 0.7]], dtype=torch.float64)
    theta = torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)
    true_trace = (chol @ chol.T).trace().item()
    true_g2 = ((theta - mu) ** 2).sum().item()
    res = gradient_noise_scale(quadratic(2000, 0, theta, mu, chol), seed=1)
    assert abs(res.trace_cov - true_trace) < 4 * res.trace_cov_stderr
    assert abs(res.grad_norm_sq - true_g2) < 4 * res.grad_norm_sq_stderr
    assert abs(res.b_simple - true_trace / true_g2) < 4 * res.b_simple_stderr
    assert 0 < res.b_simple_stderr < 0.1 * res.b_simple


def test_unbiased_gradient_norm_on_small_samples() -> None:
    mu = torch.tensor([1.0, 0.0], dtype=torch.float64)
    chol = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    theta = torch.zeros(2, dtype=torch.float64)
    n, reps, true_trace, true_g2 = 4, 400, 10.0, 1.0
    rows = []
    for seed in range(reps):
        r = gradient_noise_scale(quadratic(n, seed, theta, mu, chol), groups=2)
        rows.append((r.trace_cov, r.grad_norm_sq, r.grad_norm_sq_biased))
    est = np.array(rows)
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(reps)
    assert abs(mean[0] - true_trace) < 4 * se[0]
    assert abs(mean[1] - true_g2) < 4 * se[1]
    # the plug-in |g_bar|^2 is biased upward by tr(Σ)/N
    assert abs(mean[2] - (true_g2 + true_trace / n)) < 4 * se[2]
    assert mean[2] - true_g2 > 6 * se[2]


def test_batches_of_one_equal_the_examples_method() -> None:
    net = make_net("relu_mlp")
    X, y = signal_data(15)
    a = gradient_noise_scale(Objective(net, (X, y)), method="examples", seed=4)
    b = gradient_noise_scale(Objective(net, (X, y), batch_size=1), method="batches", seed=4)
    for field in ("trace_cov", "grad_norm_sq", "b_simple", "trace_cov_stderr"):
        assert math.isclose(getattr(a, field), getattr(b, field), rel_tol=1e-9), field


def test_batches_method_is_mccandlish_two_batch_estimator() -> None:
    net = make_net("mlp")
    X, y = signal_data(30)
    b_small, b_big = 5, 30
    obj = Objective(net, (X, y), batch_size=b_small)
    res = gradient_noise_scale(obj, method="batches")
    g = per_example_gradients(net, X, y)
    small = np.mean([(g[i : i + 5].mean(0) ** 2).sum().item() for i in range(0, 30, 5)])
    big = (g.mean(0) ** 2).sum().item()
    g2 = (b_big * big - b_small * small) / (b_big - b_small)
    trace = (small - big) / (1 / b_small - 1 / b_big)
    assert math.isclose(res.grad_norm_sq, g2, rel_tol=1e-9)
    assert math.isclose(res.trace_cov, trace, rel_tol=1e-9)
    assert res.num_gradients == 6 and res.mean_batch_size == 5.0 and res.groups == 6


def test_vectorize_false_matches_vmap() -> None:
    obj = Objective(make_net("conv"), signal_data(10))
    a = gradient_noise_scale(obj, chunk_size=4)
    b = gradient_noise_scale(obj, vectorize=False)
    assert math.isclose(a.b_simple, b.b_simple, rel_tol=1e-10)


def test_seed_only_changes_the_error_bars() -> None:
    obj = Objective(make_net("mlp"), signal_data(40))
    a = gradient_noise_scale(obj, seed=0, groups=5)
    b = gradient_noise_scale(obj, seed=0, groups=5)
    c = gradient_noise_scale(obj, seed=1, groups=5)
    assert a.b_simple_stderr == b.b_simple_stderr and a.trace_cov == b.trace_cov
    assert math.isclose(a.trace_cov, c.trace_cov, rel_tol=1e-12)
    assert a.trace_cov_stderr != c.trace_cov_stderr


def test_refusals() -> None:
    X, y = signal_data(12)
    net = make_net("bn_mlp")
    with pytest.raises(ValueError, match="train_mode=True"):
        gradient_noise_scale(Objective(net, (X, y), train_mode=True))
    # per-batch gradients are defined in training mode
    res = gradient_noise_scale(
        Objective(net, (X, y), train_mode=True, batch_size=4), method="batches"
    )
    assert math.isfinite(res.trace_cov)

    def batch_loss(fn, batch):  # type: ignore[no-untyped-def]
        return F.cross_entropy(fn(batch["x"]), batch["y"])

    custom = Objective(
        net, [{"x": X[:6], "y": y[:6]}, {"x": X[6:], "y": y[6:]}], batch_loss=batch_loss
    )
    with pytest.raises(ValueError, match="batch_loss"):
        gradient_noise_scale(custom)
    assert gradient_noise_scale(custom, method="batches").num_gradients == 2
    with pytest.raises(ValueError, match="at least two batches"):
        gradient_noise_scale(Objective(net, (X, y)), method="batches")
    with pytest.raises(ValueError, match="unknown method"):
        gradient_noise_scale(Objective(net, (X, y)), method="pairs")
    with pytest.raises(ValueError, match="groups"):
        gradient_noise_scale(Objective(net, (X, y)), groups=1)
    with pytest.raises(ValueError, match="chunk_size"):
        gradient_noise_scale(Objective(net, (X, y)), chunk_size=0)


def test_two_batches_give_no_error_bar_and_unresolved_gradient_is_inf() -> None:
    net = make_net("mlp")
    X, y = signal_data(12)
    res = gradient_noise_scale(Objective(net, (X, y), batch_size=6), method="batches")
    assert math.isfinite(res.trace_cov) and math.isnan(res.trace_cov_stderr)
    # a gradient that is pure noise: per-example gradients ±1 around zero mean
    theta = torch.zeros(1, dtype=torch.float64)
    Xq = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]], dtype=torch.float64)
    obj = Objective(Shift(theta), (Xq, torch.zeros(4)), loss_fn=half_sq)
    res = gradient_noise_scale(obj)
    assert res.grad_norm_sq < 0 and res.b_simple == math.inf and math.isnan(res.b_simple_stderr)


def test_result_record() -> None:
    res = gradient_noise_scale(Objective(make_net("mlp"), signal_data(20)))
    assert isinstance(res, NoiseScaleResult)
    d = res.to_dict()
    assert d["method"] == "examples" and d["num_gradients"] == 20 and d["seconds"] >= 0
    assert repr(res).startswith("NoiseScaleResult(b_simple=")


def test_jackknife_error_bar_is_calibrated() -> None:
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64)
    chol = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64)
    theta = torch.tensor([2.0, 0.5], dtype=torch.float64)
    runs = [
        gradient_noise_scale(quadratic(200, 50 + s, theta, mu, chol), seed=s) for s in range(40)
    ]
    spread = np.std([r.b_simple for r in runs], ddof=1)
    mean_se = np.mean([r.b_simple_stderr for r in runs])
    assert 0.6 < mean_se / spread < 1.6
