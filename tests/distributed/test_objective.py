"""A data-parallel Objective on 2 and 3 gloo ranks equals one process on all the data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from flatness.curvature import (
    HessianOperator,
    Objective,
    exact_hessian_trace,
    hessian_eigenvalues,
    hutchinson_trace,
    hutchpp_trace,
    spectral_density,
)
from tests.distributed.spawn_ranks import RankFailure, run_ranks

N, BATCH = 11, 4  # 11 examples: uneven shards on 2 and 3 ranks, cutting through batches


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    return net, torch.randn(N, 3, dtype=torch.float64), torch.randint(0, 3, (N,))


def _estimates(obj: Objective) -> dict[str, Any]:
    """Every curvature estimator of ``obj``, as plain numbers and tensors."""
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(obj.dim, generator=gen, dtype=torch.float64)
    V = torch.randn(obj.dim, 4, generator=gen, dtype=torch.float64)
    out: dict[str, Any] = {
        "value": obj.value(),
        "gradient": obj.value_and_gradient()[1],
        "hvp": obj.hvp(v),
        "num_examples": obj.num_examples,
    }
    for strategy in ("retained", "double_backward", "forward_over_reverse"):
        with HessianOperator(obj, strategy=strategy) as H:
            out[f"matvec_{strategy}"] = H.matvec(v)
            out[f"matmat_{strategy}"] = H.matmat(V)
    eig = hessian_eigenvalues(obj, k=3, tol=1e-8)
    out["top3"] = np.asarray(eig.eigenvalues)
    out["hutchinson"] = hutchinson_trace(obj, budget=16, seed=3).estimate
    out["hutchpp"] = hutchpp_trace(obj, budget=24, seed=3).estimate
    out["exact_trace"] = exact_hessian_trace(obj).estimate
    density = spectral_density(obj, steps=10, runs=2, seed=4, grid_size=50)
    out["density"] = np.asarray(density.density)
    out["density_nodes"] = np.asarray(density.nodes)
    return out


def _rank_estimates(rank: int, world: int) -> dict[str, Any]:
    net, X, y = _problem()
    obj = Objective(net, (X, y), batch_size=BATCH)
    out = _estimates(obj)
    out["local_examples"] = obj.local_examples
    out["world_size"] = obj.settings["world_size"]
    return out


def _close(a: Any, b: Any) -> tuple[float, float]:
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    diff = float((a - b).abs().max())
    return diff, diff / max(float(b.abs().max()), 1e-300)


@pytest.mark.parametrize("world", [2, 3])
def test_every_estimator_equals_one_process(world: int) -> None:
    net, X, y = _problem()
    single = _estimates(Objective(net, (X, y), batch_size=BATCH))
    ranks = run_ranks(_rank_estimates, world)
    assert sum(r["local_examples"] for r in ranks) == N
    assert sorted({r["local_examples"] for r in ranks}) == sorted(
        {N // world + (1 if i < N % world else 0) for i in range(world)}
    )
    for r in ranks:
        assert r["world_size"] == world and r["num_examples"] == N
        for key, ref in single.items():
            _, rel = _close(r[key], ref)
            assert rel < 1e-10, (key, rel)
    for key in single:  # every rank ends with the same bits
        assert _close(ranks[0][key], ranks[-1][key])[0] == 0.0, key


def _presharded(rank: int, world: int) -> dict[str, Any]:
    net, X, y = _problem()
    mine = slice(rank, None, world)  # a DistributedSampler's strided shard
    obj = Objective(net, (X[mine], y[mine]), batch_size=BATCH, presharded=True)
    return {"value": obj.value(), "gradient": obj.gradient(), "n": obj.num_examples}


def test_presharded_data_is_kept_and_weighted_globally() -> None:
    net, X, y = _problem()
    single = Objective(net, (X, y), batch_size=BATCH)
    for r in run_ranks(_presharded, 2):
        assert r["n"] == N
        assert torch.allclose(r["value"], single.value(), rtol=1e-12)
        assert torch.allclose(r["gradient"], single.gradient(), rtol=1e-12, atol=1e-15)


def _mismatched_model(rank: int, world: int) -> None:
    net, X, y = _problem()
    if rank == 1:
        with torch.no_grad():
            net[0].bias.add_(1.0)
    Objective(net, (X, y), batch_size=BATCH)


def _mismatched_data(rank: int, world: int) -> None:
    net, X, y = _problem()
    Objective(net, (X + rank, y), batch_size=BATCH)


def _too_many_ranks(rank: int, world: int) -> None:
    net, X, y = _problem()
    Objective(net, (X[:2], y[:2]))


def _presharded_empty(rank: int, world: int) -> None:
    net, X, y = _problem()
    mine = slice(0, 0) if rank == 2 else slice(rank, None, 2)
    Objective(net, (X[mine], y[mine]), presharded=True)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_mismatched_model, "rank(s) [1] hold another model"),
        (_mismatched_data, "rank(s) [1, 2] hold another data"),
        (_too_many_ranks, "rank(s) [2] would hold no data: 2 examples over 3 ranks"),
        (_presharded_empty, "rank 2: the data set is empty"),
    ],
)
def test_bad_input_is_refused_on_every_rank_naming_the_rank(fn: Any, message: str) -> None:
    with pytest.raises(RankFailure) as info:
        run_ranks(fn, 3)
    assert set(info.value.errors) == {0, 1, 2}  # no rank is left waiting
    for error in info.value.errors.values():
        assert message in error


def _opted_out(rank: int, world: int) -> int:
    net, X, y = _problem()
    return Objective(net, (X, y), distributed=None).num_examples


def test_distributed_none_keeps_all_the_data_on_each_rank() -> None:
    assert run_ranks(_opted_out, 2) == [N, N]


def test_without_a_group_nothing_changes() -> None:
    net, X, y = _problem()
    obj = Objective(net, (X, y), batch_size=BATCH)
    assert obj.group is None and obj.local_examples == obj.num_examples == N
    assert "world_size" not in obj.settings
    t = torch.ones(3)
    assert obj.reduce(t) is t and torch.equal(t, torch.ones(3))
