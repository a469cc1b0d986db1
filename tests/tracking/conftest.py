"""Tiny models and data for the tracker's tests (float64, a few hundred parameters)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_net(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A 4-10-3 tanh MLP."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 3)).to(dtype)


def tiny_data(n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple:
    """``(X, y)`` with 3 classes."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=gen, dtype=dtype)
    return X, torch.randint(0, 3, (n,), generator=gen)
