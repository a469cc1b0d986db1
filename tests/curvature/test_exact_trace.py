from __future__ import annotations

import pytest
import torch
from torch import nn

from flatness.curvature.exact_trace import check_piecewise_linear, exact_hessian_trace
from flatness.curvature.objective import Objective
from tests.conftest import dense_hessian, make_data, make_net


@pytest.mark.parametrize("kind", ["relu_mlp", "bn_mlp", "conv"])
@pytest.mark.parametrize(
    ("method", "chunk_size"), [("layers", None), ("examples", None), ("examples", 3)]
)
def test_exact_trace_equals_dense_trace(kind: str, method: str, chunk_size: int | None) -> None:
    net = make_net(kind)
    X, y = make_data(n=30)
    H = dense_hessian(net, X, y)
    obj = Objective(net, (X, y), batch_size=7)
    res = exact_hessian_trace(obj, chunk_size=chunk_size, method=method, memory_bytes=4000)
    assert res.method == "exact" and res.stderr == 0.0 and res.converged
    assert res.estimate == pytest.approx(torch.trace(H).item(), rel=1e-9)


def test_refuses_smooth_activations() -> None:
    net = make_net("mlp")  # tanh: the residual term has a non-zero diagonal
    X, y = make_data()
    obj = Objective(net, (X, y))
    with pytest.raises(ValueError, match=r"non-piecewise-linear functions \['tanh'\]"):
        exact_hessian_trace(obj)
    # and it would indeed be wrong: tr(GGN) differs from tr(H) here
    wrong = exact_hessian_trace(obj, check=False).estimate
    assert abs(wrong - torch.trace(dense_hessian(net, X, y)).item()) > 1e-6


def test_refuses_other_losses_train_mode_and_shared_layers() -> None:
    net = make_net("relu_mlp")
    X, y = make_data()
    with pytest.raises(ValueError, match="cross-entropy"):
        check_piecewise_linear(Objective(net, (X, y), loss_fn=nn.functional.nll_loss))
    with pytest.raises(ValueError, match="training mode"):
        check_piecewise_linear(Objective(make_net("bn_mlp"), (X, y), train_mode=True))

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.out = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.a(torch.relu(self.a(x)))))

    with pytest.raises(ValueError, match="more than once"):
        check_piecewise_linear(Objective(Twice().double(), (X, y)))


@pytest.mark.parametrize("input_shape", [(12,), (1, 8, 8)])
def test_exact_trace_of_zoo_conv_nets_in_1d_and_2d(input_shape: tuple[int, ...]) -> None:
    """Covers Conv1d/Conv2d, BatchNorm1d/2d, max-pooling and eval-mode dropout, and both
    conv paths (per-example gradients when positions >= patch size, Gram matrices when
    fewer positions than patch entries, as in the second block here)."""
    from flatness.zoo.networks import ConvNet

    torch.manual_seed(0)
    net = ConvNet(input_shape, 3, channels=4, kernel_size=3, hidden=(6,)).double()
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, *input_shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    net.train()
    with torch.no_grad():
        net(X)
    net.eval()
    H = dense_hessian(net, X, y)
    for memory in (10**9, 1):  # all classes at once, or one class at a time
        res = exact_hessian_trace(Objective(net, (X, y), batch_size=5), memory_bytes=memory)
        assert res.estimate == pytest.approx(torch.trace(H).item(), rel=1e-9)
