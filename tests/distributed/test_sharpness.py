"""Sharpness measures on 2 and 3 gloo ranks equal one process on all the data.

11 examples in batches of 4: the shards are uneven and cut through batches. Every
measure's ascent, line searches and random draws must see the global loss and
gradient, so the ranks take identical decisions and agree with one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from flatness.curvature import Objective
from flatness.sharpness import (
    adaptive_sharpness,
    average_sharpness,
    keskar_sharpness,
    pacbayes_flatness,
)
from tests.distributed.spawn_ranks import run_ranks

LIMIT = 180.0  # seconds for all ranks: the shared CI machine may be loaded

N, BATCH = 11, 4


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    return net, torch.randn(N, 3, dtype=torch.float64), torch.randint(0, 3, (N,))


def _measures(obj: Objective) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for solver in ("projected-lbfgs", "lbfgsb", "pga"):
        res = keskar_sharpness(obj, eps=1e-2, solver=solver, maxiter=5)
        out[f"keskar_{solver}"] = (res.value, res.max_loss, res.evaluations, res.iterations)
    sub = keskar_sharpness(obj, eps=1e-2, subspace_dim=4, maxiter=5)
    out["keskar_subspace"] = (sub.value, sub.max_loss, sub.evaluations)
    ada = adaptive_sharpness(obj, rho=0.1, steps=4)
    out["adaptive"] = (ada.value, ada.loss, ada.max_loss)
    out["adaptive_perturbation"] = ada.perturbation
    chunked = adaptive_sharpness(obj, rho=0.1, steps=3, m=3)
    out["adaptive_m3"] = (chunked.value, chunked.stderr, chunked.loss, chunked.chunks)
    out["adaptive_m3_chunks"] = chunked.chunk_values
    avg = average_sharpness(obj, sigma=0.05, samples=5)
    out["average"] = (avg.value, avg.stderr, avg.loss)
    pac = pacbayes_flatness(obj, samples=3, rtol=0.1)
    out["pacbayes"] = (pac.value, pac.deviation, pac.iterations)
    acc = pacbayes_flatness(obj, samples=3, rtol=0.1, criterion="accuracy", threshold=0.2)
    out["pacbayes_accuracy"] = (acc.value, acc.deviation, acc.base, acc.iterations)
    return out


def _rank_measures(rank: int, world: int) -> dict[str, Any]:
    net, X, y = _problem()
    return _measures(Objective(net, (X, y), batch_size=BATCH))


def _as_array(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().double().numpy()
    return np.asarray(v, dtype=np.float64)


@pytest.mark.parametrize("world", [2, 3])
def test_sharpness_measures_equal_one_process(world: int) -> None:
    net, X, y = _problem()
    single = _measures(Objective(net, (X, y), batch_size=BATCH))
    ranks = run_ranks(_rank_measures, world, timeout=LIMIT)
    for key, want in single.items():
        for rank, got in enumerate(ranks):
            np.testing.assert_allclose(
                _as_array(got[key]),
                _as_array(want),
                rtol=1e-9,
                atol=1e-12,
                err_msg=f"{key} on rank {rank} of {world}",
            )
