"""Noise scale, landscapes, parametric plots and evaluation on 2 and 3 gloo ranks.

Each equals one process on all the data: 11 training examples (uneven shards that cut
through batches of 4), a BatchNorm network for the recomputed statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatness.curvature import Objective
from flatness.evaluation import mean_loss_and_accuracy
from flatness.sharpness import gradient_noise_scale, loss_landscape_2d, parametric_plot
from tests.distributed.spawn_ranks import run_ranks

LIMIT = 180.0  # seconds for all ranks: the shared CI machine may be loaded

N, BATCH = 11, 4


def _problem() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)

    def net() -> nn.Module:
        return nn.Sequential(
            nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)
        ).double()

    a, b = net(), net()
    X, y = torch.randn(N, 3, dtype=torch.float64), torch.randint(0, 3, (N,))
    for m in (a, b):  # running statistics that differ from the data's
        m.train()
        m(X + 1.0)
        m.eval()
    return a, b, X, y


def _values(distributed: Any) -> dict[str, Any]:
    a, b, X, y = _problem()
    obj = Objective(a, (X, y), batch_size=BATCH, distributed=distributed)
    out: dict[str, Any] = {}
    # training mode shares out whole batches: the batches are the same units as in one
    # process (in eval mode a batch cut by a shard boundary is two units)
    whole = Objective(a, (X[:10], y[:10]), batch_size=2, train_mode=True, distributed=distributed)
    for method, groups, on in (("examples", 4, obj), ("batches", 3, whole)):
        res = gradient_noise_scale(on, method=method, groups=groups, chunk_size=3)
        out[f"noise_{method}"] = (
            res.b_simple,
            res.trace_cov,
            res.grad_norm_sq,
            res.grad_norm_sq_biased,
            res.trace_cov_stderr,
            res.grad_norm_sq_stderr,
            res.num_gradients,
        )
    land = loss_landscape_2d(obj, steps=3, span=(-0.5, 0.5))
    out["landscape_loss"], out["landscape_accuracy"] = land.loss, land.accuracy
    out["value"] = float(obj.value())
    out["evaluation"] = mean_loss_and_accuracy(
        obj.model_fn(), obj.batches, obj.loss_fn, reduce=obj.reduce
    )
    for bn in ("interpolate", "recompute"):
        plot = parametric_plot(
            a,
            b,
            train=(X, y),
            test=(X[:7], y[:7]),
            alphas=[-0.5, 0.0, 0.5, 1.0],
            bn=bn,
            batch_size=BATCH,
            distributed=distributed,
        )
        out[f"plot_{bn}"] = (
            plot.train_loss,
            plot.train_accuracy,
            plot.test_loss,
            plot.test_accuracy,
            plot.value,
            plot.num_train,
            plot.num_test,
        )
    return out


def _rank_values(rank: int, world: int) -> dict[str, Any]:
    return _values("auto")


def _flat(v: Any) -> np.ndarray:
    if isinstance(v, tuple):
        return np.concatenate([_flat(x) for x in v]) if v else np.zeros(0)
    if isinstance(v, torch.Tensor):
        return v.detach().double().reshape(-1).numpy()
    return np.asarray(v, dtype=np.float64).reshape(-1)


@pytest.mark.parametrize("world", [2, 3])
def test_paths_noise_scale_and_evaluation_equal_one_process(world: int) -> None:
    single = _values(None)
    ranks = run_ranks(_rank_values, world, timeout=LIMIT)
    for key, want in single.items():
        for rank, got in enumerate(ranks):
            np.testing.assert_allclose(
                _flat(got[key]),
                _flat(want),
                rtol=1e-9,
                atol=1e-12,
                err_msg=f"{key} on rank {rank} of {world}",
            )


def test_single_process_evaluation_reduce_is_identity() -> None:
    a, _, X, y = _problem()
    batches = [(X[:4], y[:4]), (X[4:], y[4:])]
    plain = mean_loss_and_accuracy(a, batches, F.cross_entropy)
    reduced = mean_loss_and_accuracy(a, batches, F.cross_entropy, reduce=lambda t: t)
    assert float(plain[0]) == float(reduced[0]) and plain[1] == reduced[1]
