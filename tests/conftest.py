"""Shared fixtures: tiny networks and data with dense float64 Hessian references."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

# tiny problems: one thread avoids oversubscribing the 2-core CI machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the data-set cache of the whole test session out of $HOME."""
    old = os.environ.get("FLATNESS_CACHE")
    os.environ["FLATNESS_CACHE"] = str(tmp_path_factory.mktemp("flatness-cache"))
    yield
    if old is None:
        os.environ.pop("FLATNESS_CACHE", None)
    else:
        os.environ["FLATNESS_CACHE"] = old


class TinyConv(nn.Module):
    """A 1-D conv net small enough for a dense Hessian (ReLU, max-pool, BatchNorm)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm1d(3)
        self.pool = nn.MaxPool1d(2)
        self.fc = nn.Linear(3 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.bn(self.conv(x.unsqueeze(1)))))
        return self.fc(h.flatten(1))


def make_net(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "mlp":
        net: nn.Module = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    elif kind == "relu_mlp":
        net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    elif kind == "bn_mlp":
        net = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    elif kind == "conv":
        net = TinyConv()
    else:
        raise ValueError(kind)
    net = net.double()
    # give BatchNorm non-trivial running statistics, then evaluate in eval mode
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 8, dtype=torch.float64) * 2 + 0.5)
    return net.eval()


def make_data(n: int = 30, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return X, y


def dense_hessian(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The float64 Hessian of the mean cross-entropy over all examples, by torch.func."""
    names = [n for n, p in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]
    buffers = dict(net.named_buffers())
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(t: torch.Tensor) -> torch.Tensor:
        parts = torch.split(t, sizes)
        params = {n: q.reshape(s) for n, q, s in zip(names, parts, shapes, strict=True)}
        out = functional_call(net, {**params, **buffers}, (X,))
        return nn.functional.cross_entropy(out, y)

    return hessian(loss)(theta)


@pytest.fixture(params=["mlp", "relu_mlp", "bn_mlp", "conv"])
def net_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
