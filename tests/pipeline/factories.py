"""Model and data factories that test manifests name as ``tests.pipeline.factories:...``."""

from __future__ import annotations

import time

import torch
from torch import nn

IN, CLASSES = 5, 3


def tiny_net(hidden: int = 4, seed: int = 0) -> nn.Module:
    """A 39-parameter ReLU MLP (5 -> hidden -> 3); its exact trace is defined."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


class SlowNet(nn.Module):
    """``tiny_net`` that sleeps in every forward pass: makes a sweep slow enough to kill."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.body = tiny_net()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.body(x)


def slow_net(delay: float = 0.02) -> nn.Module:
    return SlowNet(delay)


def tiny_data(n: int = 40, n_test: int = 20, seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, IN, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return (x[:n], y[:n]), (x[n:], y[n:])


def empty_data() -> tuple:
    x = torch.zeros(0, IN)
    y = torch.zeros(0, dtype=torch.long)
    return (x, y), (x, y)
